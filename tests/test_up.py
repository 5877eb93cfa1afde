"""`sealcam up`: restart policy (pure), supervisor with tiny fake services, buses, first-run keys."""

from __future__ import annotations

import argparse
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sealcam.cli.up import parse_duration
from sealcam.config import default_config, load_config
from sealcam.up.firstrun import first_run, key_paths
from sealcam.up.restart import RestartPolicy, RestartTracker
from sealcam.up.supervisor import SERVICE_ORDER, ServiceSpec, Supervisor, UpError, default_services


# ---------------------------------------------------------------------------------------------------- policy
def test_backoff_grows_and_caps() -> None:
    p = RestartPolicy(initial_s=0.5, factor=2, max_s=4)
    assert [p.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


def test_tracker_restarts_resets_after_stable_run_and_gives_up() -> None:
    t = RestartTracker(RestartPolicy(initial_s=1, factor=2, max_s=100, stable_after_s=60, max_failures=3))
    d = [t.on_exit(1, 0.1) for _ in range(3)]
    assert [x.restart for x in d] == [True, True, True] and [x.delay_s for x in d] == [1, 2, 4]
    last = t.on_exit(1, 0.1)
    assert last.restart is False and "giving up" in last.reason
    t2 = RestartTracker(RestartPolicy(initial_s=1, factor=2, stable_after_s=60, max_failures=3))
    for _ in range(3):
        t2.on_exit(1, 1)
    d = t2.on_exit(-9, 61)  # ran long enough: a fresh start
    assert d.restart and d.delay_s == 1 and t2.failures == 1


def test_tracker_fatal_code_and_exit_zero() -> None:
    t = RestartTracker(RestartPolicy())
    d = t.on_exit(2, 5)
    assert not d.restart and "config" in d.reason
    assert RestartTracker(RestartPolicy()).on_exit(0, 5).restart  # an unrequested exit is unexpected, even 0


def test_parse_duration() -> None:
    assert parse_duration("30s") == 30 and parse_duration("2m") == 120 and parse_duration("1.5h") == 5400
    assert parse_duration("500ms") == 0.5 and parse_duration("7") == 7
    for bad in ("", "0s", "-1s", "2d", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)


# ---------------------------------------------------------------------------------------------------- fakes
FAKES = {
    # runs until SIGTERM, exits 0; records its argv and bus URLs from the config it was given
    "fake_ok": """
        import signal, sys, time, pathlib, yaml
        cfg = yaml.safe_load(open(sys.argv[sys.argv.index('--config') + 1]))
        out = pathlib.Path(cfg['data_dir']) / ('seen-' + __package__)
        out.write_text(repr((sys.argv[1:], cfg['buses'])))
        print('ready', flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        while not stop:
            time.sleep(0.02)
        print('bye', flush=True)
    """,
    # exits 1 after 0.2 s, every time
    "fake_crash": """
        import time
        print('starting, will crash', flush=True)
        time.sleep(0.2)
        raise SystemExit(1)
    """,
    # ignores SIGTERM
    "fake_stubborn": """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('ignoring SIGTERM', flush=True)
        while True:
            time.sleep(0.05)
    """,
    # config error
    "fake_fatal": """
        print('bad config', flush=True)
        raise SystemExit(2)
    """,
}


@pytest.fixture
def fakes(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "fakes"
    for name, code in FAKES.items():
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (root / name / "__main__.py").write_text(textwrap.dedent(code))
    repo = Path(__file__).resolve().parents[1]
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(repo)]))


def cfg(tmp_path: Path):  # noqa: ANN201
    return default_config(tmp_path / "data")


def sup(tmp_path: Path, env: dict[str, str], services: list[str], lines: list, **kw: object) -> Supervisor:
    c = cfg(tmp_path)
    Path(c.data_dir).mkdir(parents=True, exist_ok=True)
    return Supervisor(c, Path(c.data_dir), services=[ServiceSpec(s, s) for s in services], env=env,
                      echo=lambda n, line: lines.append((n, line)), **kw)  # type: ignore[arg-type]


def test_default_order_starts_motion_before_the_recorder() -> None:
    assert SERVICE_ORDER == ("crypto", "uploader", "watchdog", "motion", "recorder")
    # stop: no new footage, motion ends its events, crypto closes segments, the uploader ships them, the watchdog
    ranks = {s.name: s.stop_rank for s in default_services()}
    assert sorted(ranks, key=ranks.get) == ["recorder", "motion", "crypto", "uploader", "watchdog"]


def test_runs_services_with_buses_and_stops_clean(tmp_path: Path, fakes: dict[str, str]) -> None:
    lines: list = []
    s = sup(tmp_path, fakes, ["fake_ok"], lines, grace_s=5)
    s.start()
    try:
        plain, sealed = s.buses
        assert plain.socket.exists() and sealed.socket.exists() and not plain.persist and sealed.persist
        deadline = time.time() + 10
        while time.time() < deadline and ("fake_ok", "ready") not in lines:
            s.poll()
            time.sleep(0.05)
    finally:
        rc = s.run(duration_s=0.01)
    assert rc == 0
    assert not plain.socket.exists() and not sealed.socket.exists()
    assert plain.proc.poll() is not None and sealed.proc.poll() is not None
    assert ("fake_ok", "bye") in lines
    seen = (s.data_dir / "seen-fake_ok").read_text()
    assert "--config" in seen and str(s.data_dir / "run" / "config.yml") in seen
    assert f"unix://{plain.socket}" in seen and f"unix://{sealed.socket}" in seen
    log = (s.data_dir / "logs" / "fake_ok.log").read_text()
    assert "ready" in log and "bye" in log
    eff = load_config(s.data_dir / "run" / "config.yml")
    assert eff.buses.sealed_url == sealed.url
    assert (sealed.directory / "appendonlydir").exists() or any(sealed.directory.glob("sealed.aof*"))


def test_configured_bus_urls_are_used_not_started(tmp_path: Path, fakes: dict[str, str], sealed_bus) -> None:  # noqa: ANN001
    c = cfg(tmp_path).model_copy()
    c.buses.plain_url = "unix:///nonexistent/plain.sock"
    c.buses.sealed_url = sealed_bus.url
    Path(c.data_dir).mkdir(parents=True)
    s = Supervisor(c, Path(c.data_dir), services=[ServiceSpec("fake_ok", "fake_ok")], env=fakes, echo=lambda *a: None)
    s.start()
    try:
        assert s.buses == []
    finally:
        assert s.run(duration_s=0.3) == 0
    assert sealed_bus.proc.poll() is None  # not ours to stop


def test_crashing_service_is_restarted_with_backoff(tmp_path: Path, fakes: dict[str, str]) -> None:
    lines: list = []
    s = sup(tmp_path, fakes, ["fake_ok", "fake_crash"], lines,
            policy=RestartPolicy(initial_s=0.3, factor=2, max_s=5, max_failures=50))
    s.start()
    starts: list[float] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 4.5:
            s.poll()
            n = sum(1 for n, line in lines if n == "fake_crash" and line == "starting, will crash")
            while len(starts) < n:
                starts.append(time.monotonic())
            time.sleep(0.02)
    finally:
        rc = s.run(duration_s=0.01)
    assert rc == 0  # a crash we restarted is not a failure of the stop
    crash = next(p for p in s.procs if p.spec.name == "fake_crash")
    assert 3 <= crash.restarts <= 5, crash.restarts  # 0.2 run + 0.3, 0.6, 1.2, 2.4 backoff
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(g2 > g1 for g1, g2 in zip(gaps, gaps[1:], strict=False)), gaps  # backoff grows
    assert next(p for p in s.procs if p.spec.name == "fake_ok").restarts == 0


def test_crash_loop_gives_up_and_stops_everything(tmp_path: Path, fakes: dict[str, str]) -> None:
    s = sup(tmp_path, fakes, ["fake_ok", "fake_crash"], [],
            policy=RestartPolicy(initial_s=0.05, factor=1, max_failures=2))
    s.start()
    t0 = time.monotonic()
    assert s.run(duration_s=20) == 1
    assert time.monotonic() - t0 < 10 and "fake_crash" in (s.failure or "") and "giving up" in s.failure
    assert all(p.proc.poll() is not None for p in s.procs)


def test_fatal_exit_code_is_not_restarted(tmp_path: Path, fakes: dict[str, str]) -> None:
    s = sup(tmp_path, fakes, ["fake_ok", "fake_fatal"], [])
    s.start()
    assert s.run(duration_s=20) == 1
    assert "code 2" in (s.failure or "")
    assert next(p for p in s.procs if p.spec.name == "fake_fatal").restarts == 0


def test_stubborn_service_is_killed_after_grace(tmp_path: Path, fakes: dict[str, str]) -> None:
    lines: list = []
    s = sup(tmp_path, fakes, ["fake_ok", "fake_stubborn"], lines, grace_s=0.5)
    s.start()
    deadline = time.time() + 10
    while time.time() < deadline and ("fake_stubborn", "ignoring SIGTERM") not in lines:
        time.sleep(0.05)
    t0 = time.monotonic()
    rc = s.run(duration_s=0.01)
    assert rc == 1  # not a clean stop: something had to be killed
    stubborn = next(p for p in s.procs if p.spec.name == "fake_stubborn")
    assert stubborn.killed and stubborn.proc.returncode == -9
    assert 0.5 <= time.monotonic() - t0 < 5
    ok = next(p for p in s.procs if p.spec.name == "fake_ok")
    assert ok.proc.returncode == 0 and ("fake_ok", "bye") in lines


def test_stop_order_is_reverse_of_start(tmp_path: Path, fakes: dict[str, str]) -> None:
    for n in ("a1", "a2", "a3"):
        d = tmp_path / "fakes" / n
        d.mkdir(parents=True)
        (d / "__init__.py").write_text("")
        (d / "__main__.py").write_text(textwrap.dedent(f"""
            import signal, time, pathlib, sys, yaml
            cfg = yaml.safe_load(open(sys.argv[2]))
            log = pathlib.Path(cfg['data_dir']) / 'order'
            with open(log, 'a') as f: f.write('start {n}\\n')
            stop = []
            signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
            print('up', flush=True)
            while not stop: time.sleep(0.02)
            with open(log, 'a') as f: f.write('stop {n}\\n')
        """))
    lines: list = []
    s = sup(tmp_path, fakes, ["a1", "a2", "a3"], lines)
    s.start()
    deadline = time.time() + 10
    while time.time() < deadline and sum(1 for _, x in lines if x == "up") < 3:
        time.sleep(0.05)
    assert s.run(duration_s=0.01) == 0
    order = (s.data_dir / "order").read_text().split("\n")
    assert [x for x in order if x.startswith("stop")] == ["stop a3", "stop a2", "stop a1"]


def test_missing_service_module_fails_at_start(tmp_path: Path, fakes: dict[str, str]) -> None:
    s = sup(tmp_path, fakes, ["fake_ok", "no_such_service"], [])
    with pytest.raises(UpError, match="no_such_service"):
        s.start()
    assert s.procs == [] and s.buses == []


def test_real_unbuilt_services_fail_clearly(tmp_path: Path) -> None:
    """A service package without a __main__ (services.crypto.state is a module, not a runnable package) or no
    package at all: refused before anything starts."""
    c = cfg(tmp_path)
    s = Supervisor(c, Path(c.data_dir), services=[ServiceSpec("nope", "services.nope"),
                                                  ServiceSpec("state", "services.crypto.state")])
    with pytest.raises(UpError, match=r"services\.nope.*services\.crypto\.state"):
        s.start()


# ---------------------------------------------------------------------------------------------------- first run
def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_first_run_creates_keys_and_config_once(tmp_path: Path) -> None:
    d = tmp_path / "data"
    cfg_path = first_run(d)
    k = key_paths(d)
    for name in ("identity", "hub", "hub_pass"):
        assert mode(k[name]) == 0o600, name
    assert mode(cfg_path) == 0o600
    assert k["recipient"].read_text().startswith("sc1")
    c = load_config(cfg_path)
    assert c.hub.signing_key_file.path == k["hub"] and c.hub.passphrase_file.path == k["hub_pass"]
    assert [c.cameras[0].id] == ["synthetic"] and c.storage[0].path == d / "remote"
    # the keys work: the hub key opens with the generated passphrase; the recipient matches the identity
    from sealcam.keys.hub import HubKey
    from sealcam.keys.identity import load_identity
    from sealcam.keys.secretfile import read_passphrase_file

    HubKey.load(k["hub"], read_passphrase_file(k["hub_pass"])).close()
    assert load_identity(k["identity"], lambda: None).label == k["recipient"].read_text().strip()

    before = {p: p.read_bytes() for p in [*k.values(), cfg_path]}
    assert first_run(d) == cfg_path
    assert {p: p.read_bytes() for p in before} == before  # nothing overwritten


def test_first_run_fills_in_only_whats_missing(tmp_path: Path) -> None:
    d = tmp_path / "data"
    first_run(d)
    k = key_paths(d)
    hub = k["hub"].read_bytes()
    k["recipient"].unlink()
    first_run(d)
    assert k["recipient"].read_text().startswith("sc1") and k["hub"].read_bytes() == hub


def test_cli_up_with_fake_services(tmp_path: Path, fakes: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI path end to end, with the real service list swapped for a fake one."""
    from sealcam.cli import up as up_cli
    from sealcam.up import supervisor

    monkeypatch.setattr(supervisor, "default_services", lambda: [ServiceSpec("fake_ok", "fake_ok")])
    monkeypatch.setenv("PYTHONPATH", fakes["PYTHONPATH"])
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    up_cli.add_parser(sub)
    args = p.parse_args(["up", "--data-dir", str(tmp_path / "d"), "--for", "1s"])
    assert args.func(args) == 0
    assert (tmp_path / "d" / "config.yml").exists() and (tmp_path / "d" / "keys" / "hub.key").exists()
    assert (tmp_path / "d" / "logs" / "fake_ok.log").read_text().count("ready") == 1
    assert not (tmp_path / "d" / "run" / "sealed.sock").exists()


def test_cli_up_missing_module_is_a_clear_error(tmp_path: Path, fakes: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from sealcam.cli import up as up_cli
    from sealcam.cli.common import CliError
    from sealcam.up import supervisor

    monkeypatch.setattr(supervisor, "default_services",
                        lambda: [ServiceSpec("fake_ok", "fake_ok"), ServiceSpec("nope", "services.nope")])
    monkeypatch.setenv("PYTHONPATH", fakes["PYTHONPATH"])

    p = argparse.ArgumentParser()
    up_cli.add_parser(p.add_subparsers())
    args = p.parse_args(["up", "--data-dir", str(tmp_path / "d"), "--for", "1s"])
    with pytest.raises(CliError) as e:
        up_cli.run(args)
    assert "not found" in e.value.message and e.value.code == 2
    assert not list((tmp_path / "d").glob("run/*.sock"))


def test_python_is_this_interpreter() -> None:
    assert ServiceSpec("x", "m").argv(Path("/c.yml"))[:3] == [sys.executable, "-m", "m"]
