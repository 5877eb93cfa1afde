"""Watchdog: pure rules and state machines, notification channels against a real local HTTP server, and end to
end against a real sealed bus (health + sealed records published, then stopped -> alert, /healthz 503)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sealcam.bus import names
from sealcam.bus.contract import Health, SealedRecord
from services.watchdog.http import Metric, render_metrics
from services.watchdog.notify import Notifier, host_of
from services.watchdog.rules import (
    GB,
    AlertBook,
    Bad,
    Event,
    HealthSeen,
    Observations,
    State,
    Thresholds,
    Timing,
    evaluate,
)
from services.watchdog.service import Settings, Watchdog

H1 = "ab" * 16
H2 = "cd" * 16
T0 = 1_700_000_000.0


# ---------------------------------------------------------------------------------------------------- rules
def obs(now: float = T0 + 100, **kw: object) -> Observations:
    base = dict(now=now, started=T0, camera_ids=("front",), sealed_last={H1: now - 1}, upload_backlog=0,
                disk_free_bytes=100 * GB, disk_path="/data")
    base.update(kw)
    return Observations(**base)  # type: ignore[arg-type]


def test_all_good_is_empty() -> None:
    assert evaluate(obs(), Thresholds()) == {}


def test_stall_threshold_is_factor_times_cadence_plus_grace() -> None:
    t = Thresholds(fragment_seconds=2.0, stall_factor=2.0, stall_grace_s=5.0)
    assert t.stall_after_s == 9.0
    now = T0 + 100
    assert evaluate(obs(now, sealed_last={H1: now - 8.9}), t) == {}
    bad = evaluate(obs(now, sealed_last={H1: now - 9.5}), t)
    assert set(bad) == {f"stall:{H1}"}
    assert "stalled" in bad[f"stall:{H1}"].reason and bad[f"stall:{H1}"].severity == "urgent"


def test_stall_is_per_handle() -> None:
    now = T0 + 100
    bad = evaluate(obs(now, camera_ids=("a", "b"), sealed_last={H1: now - 1, H2: now - 60}), Thresholds())
    assert set(bad) == {f"stall:{H2}"}


def test_missing_cameras_only_after_startup_grace() -> None:
    t = Thresholds(startup_grace_s=60)
    assert evaluate(obs(T0 + 30, camera_ids=("a", "b"), sealed_last={}), t) == {}
    bad = evaluate(obs(T0 + 61, camera_ids=("a", "b"), sealed_last={H1: T0 + 60}), t)
    assert set(bad) == {"cameras-missing"}
    assert "1 of 2" in bad["cameras-missing"].reason


def test_upload_lag_spool_and_backlog() -> None:
    now = T0 + 100
    up = HealthSeen("uploader", None, now, now, lag_ms=31_000, counters={"spool_bytes": 21 * GB})
    bad = evaluate(obs(now, health=(up,), upload_backlog=500), Thresholds())
    assert set(bad) == {"upload-lag:-", "spool", "upload-backlog"}
    ok = HealthSeen("uploader", None, now, now, lag_ms=29_000, counters={"spool_bytes": GB})
    assert evaluate(obs(now, health=(ok,), upload_backlog=120), Thresholds()) == {}


def test_lag_of_other_services_is_not_upload_lag() -> None:
    now = T0 + 100
    crypto = HealthSeen("crypto", "front", now, now, lag_ms=999_000)
    assert evaluate(obs(now, health=(crypto,)), Thresholds()) == {}


def test_silent_reporter_and_stale_figures_ignored() -> None:
    now = T0 + 100
    old = HealthSeen("uploader", None, now - 40, now - 40, lag_ms=999_000, counters={"spool_bytes": 99 * GB})
    bad = evaluate(obs(now, health=(old,)), Thresholds(health_timeout_s=30))
    assert set(bad) == {"silent:uploader:-"}
    cam = HealthSeen("recorder", "front", now - 31, now - 31)
    assert set(evaluate(obs(now, health=(cam,)), Thresholds(health_timeout_s=30))) == {"silent:recorder:front"}


def test_disk_low() -> None:
    bad = evaluate(obs(disk_free_bytes=1 * GB), Thresholds(disk_min_free_bytes=2 * GB))
    assert set(bad) == {"disk"} and "1.00 GB free on /data" in bad["disk"].reason
    assert evaluate(obs(disk_free_bytes=None), Thresholds()) == {}


def test_bus_down_suppresses_bus_derived_conditions_but_not_disk() -> None:
    now = T0 + 100
    bad = evaluate(obs(now, bus_ok=False, bus_error="ConnectionError", sealed_last={H1: now - 999},
                       disk_free_bytes=0), Thresholds())
    assert set(bad) == {"bus", "disk"}


def B(key: str = "k") -> dict[str, Bad]:  # noqa: N802
    return {key: Bad(key, "broken")}


def test_state_machine_fires_once_renotifies_and_resolves_after_hold_down() -> None:
    book = AlertBook(Timing(fire_after_s=0, hold_down_s=30, renotify_s=100))
    assert book.all_ok()
    ev = book.step(B(), 0)
    assert [e.kind for e in ev] == ["firing"] and book.state("k") is State.FIRING
    assert book.step(B(), 50) == []
    assert [e.kind for e in book.step(B(), 100)] == ["renotify"]
    assert book.step(B(), 150) == []
    assert book.step({}, 160) == [] and book.state("k") is State.RECOVERING
    assert not book.all_ok() and "k" in book.unhealthy()
    assert book.step({}, 189) == []
    ev = book.step({}, 190)
    assert [e.kind for e in ev] == ["resolved"] and ev[0].since == 0
    assert book.all_ok() and book.state("k") is State.OK


def test_state_machine_no_flapping() -> None:
    book = AlertBook(Timing(fire_after_s=0, hold_down_s=30, renotify_s=1000))
    kinds = []
    for t in range(0, 100, 5):  # bad, good, bad, good ... every 5 s
        kinds += [e.kind for e in book.step(B() if (t // 5) % 2 == 0 else {}, t)]
    assert kinds == ["firing"]
    kinds = [e.kind for t in range(100, 140, 5) for e in book.step({}, t)]
    assert kinds == ["resolved"]


def test_state_machine_fire_after_pending() -> None:
    book = AlertBook(Timing(fire_after_s=10, hold_down_s=0))
    assert book.step(B(), 0) == [] and book.state("k") is State.PENDING
    assert not book.all_ok() and book.unhealthy() == {}
    assert book.step({}, 5) == [] and book.all_ok()  # went good before firing: nothing sent
    book.step(B(), 20)
    assert [e.kind for e in book.step(B(), 30)] == ["firing"]
    assert [e.kind for e in book.step({}, 31)] == ["resolved"]  # hold_down 0: resolves at once


def test_state_machine_independent_keys_and_reason_updates() -> None:
    book = AlertBook(Timing(hold_down_s=0))
    ev = book.step({"a": Bad("a", "r1"), "b": Bad("b", "x")}, 0)
    assert sorted(e.key for e in ev) == ["a", "b"]
    book.step({"a": Bad("a", "r2")}, 1)
    assert book.active() == {"a": (State.FIRING, "r2")}


# ---------------------------------------------------------------------------------------------------- notify
class Recorder:
    """A real HTTP server on 127.0.0.1 that records every request."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict] = []
        self.status = status
        rec = self

        class H(BaseHTTPRequestHandler):
            def _do(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": body})
                self.send_response(rec.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _do  # noqa: N815

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def of(self, prefix: str) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith(prefix)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hooks():  # noqa: ANN201
    r = Recorder()
    yield r
    r.close()


def test_webhook_and_ntfy_payloads(hooks: Recorder) -> None:
    n = Notifier(hooks.url("/hook?token=SECRET"), hooks.url("/ntfy/topic-SECRET"), None, hub="hub1")
    assert "SECRET" not in n.describe() and "127.0.0.1" in n.describe()
    ev = Event("firing", "disk", "disk low: 1 GB free", "urgent", T0, T0 - 5)
    assert n.send(ev)
    (wh,) = hooks.of("/hook")
    assert wh["method"] == "POST" and wh["headers"]["Content-Type"] == "application/json"
    body = json.loads(wh["body"])
    assert body["event"] == "firing" and body["condition"] == "disk" and body["severity"] == "urgent"
    assert body["summary"] == "disk low: 1 GB free" and body["hub"] == "hub1" and body["at"].endswith("Z")
    (nt,) = hooks.of("/ntfy")
    assert nt["method"] == "POST" and nt["headers"]["Title"] == "sealcam ALERT: disk"
    assert nt["headers"]["Priority"] == "urgent" and "disk low" in nt["body"].decode()
    n.send(Event("resolved", "disk", "disk low", "urgent", T0 + 60, T0))
    assert json.loads(hooks.of("/hook")[1]["body"])["event"] == "resolved"
    assert hooks.of("/ntfy")[1]["headers"]["Title"].startswith("sealcam RESOLVED")
    assert n.sent == {"webhook": 2, "ntfy": 2}


def test_delivery_failure_is_counted_and_url_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = Recorder(status=500)
    try:
        n = Notifier(bad.url("/hook/SECRET-TOKEN"), None, None)
        assert not n.send(Event("firing", "k", "r", "high", T0, T0))
    finally:
        bad.close()
    n2 = Notifier("http://127.0.0.1:1/x/SECRET-TOKEN", None, None, timeout_s=2)  # nothing listens on port 1
    assert not n2.send(Event("firing", "k", "r", "high", T0, T0))
    assert n.failed == {"webhook": 1} and n2.failed == {"webhook": 1}
    assert "SECRET" not in caplog.text and "127.0.0.1" in caplog.text
    assert host_of("https://ntfy.sh/mytopic?auth=x") == "ntfy.sh"


def test_bad_url_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as e:
        Notifier("ftp://SECRET@host/x")
    assert "SECRET" not in str(e.value)


def test_notifier_reads_urls_from_secret_files(tmp_path: Path, hooks: Recorder) -> None:
    from sealcam.config.models import Alerts

    f = tmp_path / "hook.url"
    f.write_text(hooks.url("/hook") + "\n")
    n = Notifier.from_alerts(Alerts.model_validate({"webhook_url_file": str(f)}))
    assert n.webhook_url == hooks.url("/hook") and n.ntfy_url is None


def test_render_metrics() -> None:
    text = render_metrics((Metric("a_b", "gauge", "help", (({"x": 'q"\\\n'}, 1.5), ({}, 2))),))
    assert text == '# HELP a_b help\n# TYPE a_b gauge\na_b{x="q\\"\\\\\\n"} 1.5\na_b 2\n'


# ---------------------------------------------------------------------------------------------------- end to end
def parse_prometheus(text: str) -> dict[str, list[tuple[str, float]]]:
    import re

    out: dict[str, list[tuple[str, float]]] = {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                         r'(-?[0-9.e+]+|NaN|[+-]Inf)$')
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = line_re.match(line)
        assert m, f"bad exposition line: {line!r}"
        out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback test URL
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_end_to_end_stall_fires_webhook_and_healthz(sealed_bus, sealed_redis, hooks: Recorder,  # noqa: ANN001
                                                    tmp_path: Path) -> None:
    r = sealed_redis
    clock_base = time.time()
    settings = Settings(thresholds=Thresholds(fragment_seconds=0.5, stall_factor=2.0, stall_grace_s=0.5,
                                              startup_grace_s=60, health_timeout_s=30),
                        timing=Timing(fire_after_s=0, hold_down_s=0.5, renotify_s=3600),
                        interval_s=0.1, uptime_interval_s=0.2, http_port=0)
    wd = Watchdog(sealed_bus.url, ("front",), tmp_path, Notifier(hooks.url("/hook"), hooks.url("/ntfy"),
                                                                  hooks.url("/ping")), settings, instance="t1")
    wd.start_http()
    base = f"http://127.0.0.1:{wd.http.port}"
    assert get(base + "/healthz")[0] == 503  # not evaluated yet
    stop = threading.Event()
    publishing = threading.Event()
    publishing.set()

    def crypto() -> None:
        seq = 0
        while not stop.is_set():
            if publishing.is_set():
                now_us = int(time.time() * 1e6)
                r.xadd(names.sealed_rec(H1), SealedRecord(H1, 0, seq * 10, b"x" * 10, False,
                                                         f"{H1}/000000000000-2024010100.seal").to_fields(),
                       maxlen=names.MAXLEN_SEALED_REC, approximate=True)
                r.xadd(names.SEALED_HEALTH, Health("crypto", now_us, {"records": seq}, 5, "front").to_fields())
                r.xadd(names.SEALED_HEALTH, Health("uploader", now_us, {"spool_bytes": 1000}, 20).to_fields())
                seq += 1
            stop.wait(0.1)

    pub = threading.Thread(target=crypto, daemon=True)
    pub.start()
    runner = threading.Thread(target=wd.run, daemon=True)
    try:
        time.sleep(0.3)
        runner.start()
        deadline = time.time() + 5
        while time.time() < deadline and not hooks.of("/ping"):
            time.sleep(0.05)
        assert hooks.of("/ping"), "uptime monitor pinged while healthy"
        code, body = get(base + "/healthz")
        assert code == 200 and json.loads(body)["status"] == "ok"
        m = parse_prometheus(get(base + "/metrics")[1].decode())
        assert m["sealcam_watchdog_healthy"] == [("", 1.0)]
        assert m["sealcam_sealed_streams"] == [("", 1.0)]
        assert m["sealcam_upload_spool_bytes"][0][1] == 1000
        assert {lab for lab, _ in m["sealcam_health_age_seconds"]} == {'{camera="front",service="crypto"}',
                                                                        '{camera="",service="uploader"}'}
        assert r.get(names.heartbeat_key("watchdog", "t1")) is not None

        publishing.clear()  # the camera's sealed output stops
        deadline = time.time() + 10
        while time.time() < deadline and not any(json.loads(x["body"])["event"] == "firing" for x in hooks.of("/hook")):
            time.sleep(0.05)
        fired = [json.loads(x["body"]) for x in hooks.of("/hook")]
        assert [f["condition"] for f in fired if f["event"] == "firing"] == [f"stall:{H1}"]
        assert hooks.of("/ntfy")[0]["headers"]["Priority"] == "urgent"
        code, body = get(base + "/healthz")
        assert code == 503 and f"stall:{H1}" in json.loads(body)["reasons"]
        pings = len(hooks.of("/ping"))
        time.sleep(0.6)
        assert len(hooks.of("/ping")) == pings, "no uptime pings while unhealthy"
        m = parse_prometheus(get(base + "/metrics")[1].decode())
        assert m["sealcam_watchdog_healthy"] == [("", 0.0)]
        assert (f'{{condition="stall:{H1}",state="firing"}}', 1.0) in m["sealcam_watchdog_condition"]
        assert m["sealcam_sealed_last_record_age_seconds"][0][1] > 1.0

        publishing.set()  # it comes back: resolved after the hold-down, pings resume
        deadline = time.time() + 10
        while time.time() < deadline and not any(json.loads(x["body"])["event"] == "resolved"
                                                 for x in hooks.of("/hook")):
            time.sleep(0.05)
        assert [json.loads(x["body"])["event"] for x in hooks.of("/hook")] == ["firing", "resolved"]
        deadline = time.time() + 5
        while time.time() < deadline and len(hooks.of("/ping")) == pings:
            time.sleep(0.05)
        assert len(hooks.of("/ping")) > pings
        assert get(base + "/healthz")[0] == 200
        # it consumed health through its group and acknowledged everything
        groups = {g["name"].decode(): g for g in r.xinfo_groups(names.SEALED_HEALTH)}
        assert groups["watchdog"]["pending"] == 0
        # and never touched a plain-side key
        assert not list(r.scan_iter(match="plain:*"))
    finally:
        stop.set()
        wd.stop()
        runner.join(5) if runner.is_alive() else None
    assert clock_base < time.time()


def test_malformed_health_is_ignored_and_acked(sealed_bus, sealed_redis, tmp_path: Path) -> None:  # noqa: ANN001
    wd = Watchdog(sealed_bus.url, ("front",), tmp_path, Notifier(), Settings(http_port=None), instance="t2")
    wd.observe()  # creates the group
    sealed_redis.xadd(names.SEALED_HEALTH, {"v": "1", "t": "health", "service": "BAD!"})
    sealed_redis.xadd(names.SEALED_HEALTH, {"v": "9", "t": "health"})
    sealed_redis.xadd(names.SEALED_HEALTH, Health("uploader", int(time.time() * 1e6), {}, 1).to_fields())
    o = wd.observe()
    assert wd.bad_entries == 2 and [h.service for h in o.health] == ["uploader"]
    assert sealed_redis.xinfo_groups(names.SEALED_HEALTH)[0]["pending"] == 0


def test_bus_down_is_a_condition(tmp_path: Path) -> None:
    wd = Watchdog(f"unix://{tmp_path}/nothing.sock", ("front",), tmp_path, Notifier(), Settings(http_port=None),
                  instance="t3")
    wd._r = __import__("redis").Redis(unix_socket_path=str(tmp_path / "nothing.sock"), socket_timeout=0.5)
    ev = wd.tick()
    assert [e.key for e in ev] == ["bus"] and wd.last_obs is not None and not wd.last_obs.bus_ok


def test_module_runs_and_stops_on_sigterm(sealed_bus, tmp_path: Path) -> None:  # noqa: ANN001
    from sealcam.config import default_config

    cfg = default_config(tmp_path / "data").model_dump(mode="json", exclude_none=True)
    cfg["buses"] = {"sealed_url": sealed_bus.url}
    import yaml

    (tmp_path / "c.yml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.Popen([sys.executable, "-m", "services.watchdog", "--config", str(tmp_path / "c.yml"),
                          "--http-port", "0", "--interval", "0.2"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 10
        lines = []
        while time.time() < deadline:
            line = p.stderr.readline()
            lines.append(line)
            if "serving /healthz" in line or not line:
                break
        assert any("serving /healthz" in x for x in lines), lines
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_module_config_error_exits_2(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text("cameras: nope\n")
    p = subprocess.run([sys.executable, "-m", "services.watchdog", "--config", str(tmp_path / "c.yml")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "config" in p.stderr
