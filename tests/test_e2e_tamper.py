"""End to end, tamper: an RTSP camera emulator whose picture goes black (the lens covered) -> `sealcam up`
(recorder, motion, crypto, uploader, watchdog) -> (a) a sealed tamper EVENT record labelled `covered` on the
local remote, recovered by `sealcam decrypt --events -`; (b) the watchdog's `tamper:CAM:covered` alert, POSTed
as JSON to a real HTTP server started here (alerts.webhook_url_file). Real processes and servers only."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from rtsp_server import RtspCamera, available
from upctl import SEALCAM, run_cli

BARS_S = 6  # the camera shows a test card this long after the recorder connects, then black (lens covered)
# A static test card (something for motion to learn), then black to the end.
_SCRIPT = (f"smptebars=s=320x240:r=10:d={BARS_S}[a];color=c=black:s=320x240:r=10:d=40[b];"
           "[a][b]concat=n=2:v=1:a=0")


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=timeout)


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.path, self.headers.get("Content-Type"), body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on the loopback collecting every POST as (path, content type, body)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    srv.received = []  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.fixture(scope="module")
def covered_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tamper") / "covered.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", _SCRIPT, "-c:v", "libx264",
                    "-preset", "ultrafast", "-bf", "0", "-g", "10", "-pix_fmt", "yuv420p", "-movflags",
                    "+faststart", str(out)], check=True, timeout=120)
    return out


def test_covered_lens_gives_sealed_tamper_event_and_webhook_alert(tmp_path: Path, covered_video: Path,
                                                                   webhook: ThreadingHTTPServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if why := available():
        pytest.skip(why)
    monkeypatch.setenv("SEALCAM_WATCHDOG_PORT", "0")  # never collide with another `sealcam up`
    data = tmp_path / "data"
    first = _run("up", "--data-dir", str(data), "--for", "1s")  # keys and a default config
    assert first.returncode == 0, first.stdout + first.stderr
    cfg = yaml.safe_load((data / "config.yml").read_text())
    url_file = data / "keys" / "webhook-url"
    url_file.write_text(f"http://127.0.0.1:{webhook.server_port}/hooks/sealcam-t0ken\n")
    url_file.chmod(0o600)
    cfg["alerts"] = {"webhook_url_file": str(url_file)}
    cfg["recording"] = {"segment_seconds": 10}
    cfg["motion"] = {"end_seconds": 1.5, "tamper": {"seconds": 1.0}}
    pipeline = (f"( filesrc location={covered_video} ! qtdemux ! h264parse ! "
                "rtph264pay name=pay0 pt=96 config-interval=1 )")
    t0 = time.monotonic()
    with RtspCamera(pipeline=pipeline) as cam:
        cfg["cameras"] = [{"id": "porch", "inputs": [{"url": cam.url, "roles": ["record"]}]}]
        path = tmp_path / "tamper.yml"
        path.write_text(yaml.safe_dump(cfg))
        up = subprocess.Popen([*SEALCAM, "up", "--config", str(path), "--data-dir", str(data), "--for", "60s"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # stopped (SIGTERM: a clean, ordered stop) once the alert is in, plus a moment for the sealed records
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline and up.poll() is None and not any(
                    b"tamper:porch:covered" in body for _, _, body in webhook.received):  # type: ignore[attr-defined]
                time.sleep(0.2)
            alerted_s = time.monotonic() - t0
            time.sleep(1)
        finally:
            up.terminate()
            out = up.communicate(timeout=90)[0]
    elapsed = time.monotonic() - t0
    logs = "".join(f"\n--- {p.name} ---\n{p.read_text(errors='replace')[-2500:]}"
                   for p in sorted((data / "logs").glob("*.log")))
    assert up.returncode == 0, out[-3000:] + logs
    print(f"tamper e2e: alert after {alerted_s:.1f} s, `sealcam up` ran {elapsed:.1f} s")

    # (a) the sealed tamper event, recovered by the owner
    remote = data / "remote"
    ver = _run("verify", "--json", "--signer", str(data / "keys" / "hub.key"), str(remote))
    assert ver.returncode == 0 and json.loads(ver.stdout)["ok"], ver.stdout[-3000:] + ver.stderr
    blob = b"".join(p.read_bytes() for p in remote.rglob("*.seal"))
    assert b"covered" not in blob and b"porch" not in blob  # only inside the ciphertext
    dec = _run("decrypt", "--identity", str(data / "keys" / "owner.identity"), "--signer",
               str(data / "keys" / "hub.key"), "--events", "-", "-o", str(tmp_path / "all.mp4"), str(remote))
    assert dec.returncode == 0, dec.stderr[-3000:]
    events = [json.loads(line) for line in dec.stdout.splitlines() if line.startswith("{")]
    tamper = [e for e in events if e.get("t") == "motion" and e.get("kind") == "tamper"]
    assert tamper, f"no tamper event sealed: {events}" + logs
    covered = [e for e in tamper if e["label"] == "covered" and e["camera"] == "porch"]
    assert covered and covered[0]["phase"] == "start", tamper
    first_id = covered[0]["event_id"]
    assert [e["phase"] for e in covered if e["event_id"] == first_id][-1] == "end"  # stop ends it, sealed too
    assert {e["label"] for e in tamper} == {"covered"}, tamper  # black is neither blinded nor moved
    thumbs = [e for e in events if e.get("t") == "thumb" and e["event_id"] == first_id]
    assert len(thumbs) == 1, events  # a tamper event's thumbnail, at its start

    # (b) the watchdog's alert, delivered to the webhook
    alerts = [(p, ct, json.loads(b)) for p, ct, b in webhook.received]  # type: ignore[attr-defined]
    assert all(p == "/hooks/sealcam-t0ken" and ct == "application/json" for p, ct, _ in alerts), alerts
    tamper_alerts = [a for _, _, a in alerts if a["condition"] == "tamper:porch:covered"]
    assert tamper_alerts, f"no tamper alert among {[a['condition'] for _, _, a in alerts]}" + logs
    a = tamper_alerts[0]
    assert a["event"] == "firing" and a["severity"] == "urgent" and a["source"] == "sealcam-watchdog", a
    assert "porch" in a["summary"] and "covered" in a["summary"], a
    assert a["title"] == "sealcam ALERT: tamper:porch:covered"
    wd_log = (data / "logs" / "watchdog.log").read_text(errors="replace")
    assert "sealcam-t0ken" not in wd_log  # the URL's token is never logged
