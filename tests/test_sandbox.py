"""`sealcam up --sandbox`: what each service's bubblewrap sandbox lets it reach, proved from inside.

Pure part: which files, sockets, devices and variables each zone gets (`needs_for`) and the bwrap command line.
Real part: a probe program run with the exact sandbox the supervisor would give a service (`Sandbox.popen`,
the code path `sealcam up --sandbox` uses), against real embedded buses and a TCP listener on the host's
loopback, with the same probe run unsandboxed as the negative control. End to end: `sealcam up --sandbox`
records, seals and uploads footage that `sealcam verify` accepts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sealcam.config import load_config
from sealcam.config.secrets import SecretRef
from sealcam.isolation import ZONES
from sealcam.up.firstrun import first_run
from sealcam.up.sandbox import (
    INSTALL_HINT,
    STATE_DIRS,
    Host,
    Needs,
    Sandbox,
    SandboxError,
    _walk,
    bwrap_argv,
    check_bwrap,
    needs_for,
)
from sealcam.up.supervisor import Supervisor

SEALCAM = [sys.executable, "-m", "sealcam.cli.main"]
FTP_ENV = "SC_TEST_FTP_PASSWORD"  # an env: secret of the uploader
OTHER_ENV = "SC_TEST_UNRELATED"  # set in the supervisor's environment, for nobody


def need_bwrap() -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bwrap not installed (apt install bubblewrap; scripts/setup.sh does)")


# ------------------------------------------------------------------------------------------------ a full config
def full_config(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A first-run data dir plus every kind of secret: camera password, S3/SFTP credentials (one of them outside
    data_dir), an FTP password from the environment, an alert URL, SFTP known_hosts. Returns (config, files)."""
    data = tmp_path / "data"
    cfg = yaml.safe_load(first_run(data).read_text())
    keys = data / "keys"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    files = {"cam_pass": keys / "cam.pass", "s3_id": keys / "s3-id", "s3_secret": outside / "s3-secret",
             "sftp_key": keys / "sftp.key", "known_hosts": keys / "known_hosts", "webhook": keys / "webhook-url"}
    for name, p in files.items():
        p.write_text(f"{name}-value\n")
        p.chmod(0o600)
    cfg["cameras"][0]["inputs"][0]["password_file"] = str(files["cam_pass"])
    cfg["storage"] += [
        {"type": "s3", "name": "s3", "bucket": "footage", "endpoint_url": "http://127.0.0.1:9",
         "access_key_id_file": str(files["s3_id"]), "secret_access_key_file": str(files["s3_secret"])},
        {"type": "sftp", "name": "box", "host": "127.0.0.1", "user": "cam", "key_file": str(files["sftp_key"]),
         "known_hosts_file": str(files["known_hosts"])},
        {"type": "ftp", "name": "drive", "host": "127.0.0.1", "user": "cam", "password_file": f"env:{FTP_ENV}"},
    ]
    cfg["alerts"] = {"webhook_url_file": str(files["webhook"])}
    path = data / "full.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path, files


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Supervisor, Path, dict[str, Path]]]:
    """Real embedded buses with ACL users (as `sealcam up` starts them) and the effective config; no services."""
    path, files = full_config(tmp_path)
    config = load_config(path)
    sup = Supervisor(config, Path(config.data_dir), services=[])
    sup.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        eff = sup.write_effective_config(sup.start_buses())
        yield sup, eff, files
    finally:
        sup.stop()


# ------------------------------------------------------------------------------------------------ pure: needs
def test_each_zone_gets_only_its_own_secrets_sockets_and_state(running: Any) -> None:
    sup, eff, f = running
    config, data = load_config(eff), sup.data_dir
    plain, sealed = data / "run" / "plain.sock", data / "run" / "sealed.sock"
    acl = data / "keys" / "bus"
    n = {s: needs_for(config, s, eff) for s in ("recorder", "motion", "crypto", "uploader", "watchdog")}
    all_secrets = set(f.values()) - {f["known_hosts"]} | {data / "keys" / "hub.key", data / "keys" / "hub.pass"}
    all_secrets |= set(acl.glob("*.pass"))
    expect = {
        "crypto": {data / "keys" / "hub.key", data / "keys" / "hub.pass", acl / "plain-crypto.pass",
                   acl / "sealed-crypto.pass"},
        "uploader": {f["s3_id"], f["s3_secret"], f["sftp_key"], acl / "sealed-uploader.pass"},
        "watchdog": {f["webhook"], acl / "sealed-watchdog.pass"},
        "recorder": {f["cam_pass"], acl / "plain-recorder.pass"},
        "motion": {acl / "plain-motion.pass"},
    }
    for svc, want in expect.items():
        assert set(n[svc].ro) & all_secrets == want, svc
        assert eff in n[svc].ro, svc
    assert {s: set(x.sockets) for s, x in n.items()} == {
        "crypto": {plain, sealed}, "motion": {plain}, "recorder": {plain}, "uploader": {sealed},
        "watchdog": {sealed}}
    assert {s for s, x in n.items() if x.network} == {"recorder", "uploader", "watchdog"}
    assert set(n["crypto"].rw) == {data / "crypto"}
    assert set(n["uploader"].rw) == {data / d for d in ("spool", "spool.done", "spool.class", "remote")}
    assert not n["watchdog"].rw and not n["recorder"].rw and not n["motion"].rw
    assert f["known_hosts"] in n["uploader"].ro and data / "keys" / "owner.recipient" in n["crypto"].ro
    # the env: secret goes to the uploader only
    assert FTP_ENV in n["uploader"].env_names
    assert not any(FTP_ENV in x.env_names for s, x in n.items() if s != "uploader")
    # buses and network come from the isolation graph, not from a copy of it
    for svc, x in n.items():
        assert {s.stem for s in x.sockets} == set(ZONES[svc].buses)
        assert x.network == (ZONES[svc].network != "none")


def test_every_secret_a_section_names_is_bound(running: Any) -> None:
    """The sandbox gives each service every secret file its config section names (else it could not start)."""
    _sup, eff, _f = running
    config = load_config(eff)
    for svc in ZONES:
        refs, _ = _walk(config.section_for(svc))
        files = {r.path for r in refs if isinstance(r, SecretRef) and r.path is not None}
        assert files and files <= set(needs_for(config, svc, eff).ro), svc


def test_devices_only_for_the_recorder(tmp_path: Path) -> None:
    path, _ = full_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["cameras"].append({"id": "usb", "inputs": [{"url": "v4l2:///dev/video3", "roles": ["record"]}]})
    cfg["buses"] = {"plain_url": "unix:///run/sc/plain.sock", "sealed_url": "unix:///run/sc/sealed.sock"}
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(path)
    assert needs_for(config, "recorder", path).devices == (Path("/dev/video3"),)
    assert all(not needs_for(config, s, path).devices for s in ZONES if s != "recorder")


def test_state_dirs_match_what_the_services_create(tmp_path: Path) -> None:
    """STATE_DIRS (what is writable) is every folder crypto's and the uploader's state code makes in data_dir."""
    from services.crypto.state import ChainState, StateStore
    from services.uploader.spool import Spool

    made = {}
    for svc, make in (("crypto", lambda d: StateStore(d, "ab" * 16).save(ChainState())), ("uploader", Spool)):
        d = tmp_path / svc
        d.mkdir()
        make(d)
        made[svc] = tuple(sorted(p.name for p in d.iterdir()))
    assert made == {s: tuple(sorted(v)) for s, v in STATE_DIRS.items()}


def test_tcp_bus_for_a_networkless_zone_is_refused(tmp_path: Path) -> None:
    path, _ = full_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["buses"] = {"plain_url": "redis://10.0.0.5:6379", "sealed_url": "unix:///run/sealed.sock"}
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(path)
    with pytest.raises(SandboxError, match=r"crypto has no network.*buses\.plain_url is redis://10\.0\.0\.5"):
        needs_for(config, "crypto", path)
    assert needs_for(config, "recorder", path).sockets == ()  # a TCP bus over its shared network is fine
    with pytest.raises(SandboxError, match="no trust zone"):
        needs_for(config, "fake_ok", path)


def test_argv_shape() -> None:
    data = Path("/srv/d")
    host = Host((Path("/usr"), Path("/opt/venv"), Path("/usr/lib/python3")), (("usr/lib", "/lib"),),
                Path("/opt/venv/bin"))
    needs = Needs("crypto", False, data, ro=(data / "keys" / "hub.key", Path("/etc/sealcam/x.pass")),
                  rw=(data / "crypto",), sockets=(data / "run" / "plain.sock",), env_names=("TZ",))
    env = {"TZ": "UTC", "AWS_SECRET_ACCESS_KEY": "nope", "PATH": "/host/bin"}
    a = bwrap_argv(needs, host, ["python", "-m", "services.crypto"], env, skeleton=data / "run" / "sb")
    s = " ".join(a)
    for flag in ("--die-with-parent", "--unshare-all", "--new-session", "--cap-drop ALL", "--clearenv",
                 "--as-pid-1", "--remount-ro /"):
        assert flag in s
    assert "--share-net" not in a
    assert "--setenv TZ UTC" in s and "nope" not in s and "/host/bin" not in s
    assert "--ro-bind /usr /usr" in s and "--ro-bind /opt/venv /opt/venv" in s and "/usr/lib/python3" not in s
    assert "--ro-bind /srv/d/run/sb /srv/d" in s and "--bind /srv/d/crypto /srv/d/crypto" in s
    assert "--ro-bind-try /srv/d/keys/hub.key /srv/d/keys/hub.key" in s
    assert "--bind /srv/d/run/plain.sock /srv/d/run/plain.sock" in s
    i = a.index
    assert i("/tmp") < i("/usr") < i("/srv/d/run/sb") < i("/srv/d/crypto")  # tmpfs, system, skeleton, binds
    assert a[-4:] == ["--", "python", "-m", "services.crypto"]
    assert "--share-net" in bwrap_argv(Needs("uploader", True, data), host, ["x"], {}, skeleton=None)


def test_missing_or_broken_bwrap_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="apt install bubblewrap"):
        check_bwrap(str(tmp_path / "no-bwrap"))
    # what bwrap says where user namespaces are off (a stand-in binary: they cannot be turned off here)
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxError, match="user namespaces seem to be disabled"):
        check_bwrap(str(fake))
    assert INSTALL_HINT == "--sandbox needs bubblewrap: apt install bubblewrap"


def test_cli_without_bwrap_exits_2_before_starting_anything(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path / "empty-bin"))
    res = subprocess.run([*SEALCAM, "up", "--sandbox", "--data-dir", str(tmp_path / "d"), "--for", "1s"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2 and INSTALL_HINT in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "d" / "run").exists()  # no bus, no service was started


# ------------------------------------------------------------------------------------------------ real: probes
PROBE = r"""
import errno, json, os, socket, sys

def err(e):
    return errno.errorcode.get(e.errno, type(e).__name__)

def tcp(host, port):
    with socket.socket() as s:
        s.settimeout(3)
        s.connect((host, port))
        return "ok"

def bus(path):  # a Redis-protocol PING on the Unix socket: '+PONG' or '-NOAUTH...' both prove a live server
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(3)
        s.connect(path)
        s.sendall(b"PING\r\n")
        return s.recv(64).decode()[:7]

def read(path):
    with open(path, "rb") as f:
        return "ok" if f.read() else "empty"

def write(path):
    with open(path, "wb") as f:
        f.write(b"x")
    os.unlink(path)
    return "ok"

def ls(path):
    return sorted(os.listdir(path))

def ifaces():
    return sorted(n for _, n in socket.if_nameindex())

def env(name):
    return os.environ.get(name)

out = {}
for check in json.loads(sys.argv[1]):
    try:
        out[json.dumps(check)] = globals()[check[0]](*check[1:])
    except OSError as e:
        out[json.dumps(check)] = err(e)
print(json.dumps(out))
"""


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on the host's loopback (connections wait in its backlog; nothing needs to accept)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def probe(sup: Supervisor, eff: Path, service: str | None, checks: list[list[Any]]) -> dict[str, Any]:
    """Run PROBE with `checks` in `service`'s sandbox exactly as the supervisor starts it (None: unsandboxed)."""
    argv = [sys.executable, "-c", PROBE, json.dumps(checks)]
    env = dict(os.environ, **{FTP_ENV: "ftp-pw", OTHER_ENV: "x"})
    kw: dict[str, Any] = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                              cwd=str(sup.data_dir), stdin=subprocess.DEVNULL)
    if service is None:
        proc = subprocess.Popen(argv, env=env, **kw)
    else:
        proc, pid1 = Sandbox(sup.data_dir, shutil.which("bwrap") or "bwrap").popen(service, argv, eff, env, **kw)
        assert pid1 is not None and pid1 != proc.pid
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    res = json.loads(out)
    return {tuple(json.loads(k)): v for k, v in res.items()}


def checks_for(sup: Supervisor, f: dict[str, Path], port: int) -> list[list[Any]]:
    d = sup.data_dir
    return [
        ["tcp", "127.0.0.1", port], ["ifaces"], ["bus", str(d / "run" / "plain.sock")],
        ["bus", str(d / "run" / "sealed.sock")], ["read", str(d / "keys" / "hub.key")],
        ["read", str(d / "keys" / "bus" / "plain-crypto.pass")], ["read", str(f["s3_id"])],
        ["read", str(f["s3_secret"])], ["read", str(f["webhook"])], ["read", str(f["cam_pass"])],
        ["read", str(d / "keys" / "bus" / "sealed-uploader.pass")], ["read", str(d / "keys" / "owner.identity")],
        ["ls", str(d)], ["ls", str(d / "spool")], ["write", str(d / "crypto" / "probe")],
        ["write", str(d / "spool" / "probe")], ["write", str(d / "probe")], ["env", FTP_ENV], ["env", OTHER_ENV],
    ]


def test_negative_control_unsandboxed_probe_reaches_everything(running: Any, listener: int) -> None:
    """Without the sandbox the same probe reaches all of it: the sandboxed results below are the sandbox's."""
    need_bwrap()
    sup, eff, f = running
    (sup.data_dir / "spool").mkdir(exist_ok=True)
    (sup.data_dir / "crypto").mkdir(exist_ok=True)
    r = probe(sup, eff, None, checks_for(sup, f, listener))
    d = sup.data_dir
    assert r[("tcp", "127.0.0.1", listener)] == "ok"
    assert r[("bus", str(d / "run" / "plain.sock"))].startswith("-NOAUTH")
    assert r[("bus", str(d / "run" / "sealed.sock"))].startswith("-NOAUTH")
    for p in (d / "keys" / "hub.key", f["s3_id"], f["s3_secret"], f["webhook"], f["cam_pass"]):
        assert r[("read", str(p))] == "ok", p
    assert r[("write", str(d / "probe"))] == "ok" and r[("env", OTHER_ENV)] == "x"


def test_crypto_sandbox_has_no_network_and_sees_only_its_own(running: Any, listener: int) -> None:
    need_bwrap()
    sup, eff, f = running
    d = sup.data_dir
    r = probe(sup, eff, "crypto", [*checks_for(sup, f, listener), ["tcp", "192.0.2.1", 80], ["tcp", "1.1.1.1", 53]])
    assert r[("ifaces",)] == ["lo"]  # a private loopback and nothing else
    assert r[("tcp", "127.0.0.1", listener)] == "ECONNREFUSED"  # that loopback is not the host's
    assert r[("tcp", "192.0.2.1", 80)] == "ENETUNREACH" and r[("tcp", "1.1.1.1", 53)] == "ENETUNREACH"
    assert r[("bus", str(d / "run" / "plain.sock"))].startswith("-NOAUTH")  # both buses answer
    assert r[("bus", str(d / "run" / "sealed.sock"))].startswith("-NOAUTH")
    assert r[("read", str(d / "keys" / "hub.key"))] == "ok"
    assert r[("read", str(d / "keys" / "bus" / "plain-crypto.pass"))] == "ok"
    for p in (f["s3_id"], f["s3_secret"], f["webhook"], f["cam_pass"], d / "keys" / "bus" / "sealed-uploader.pass",
              d / "keys" / "owner.identity"):
        assert r[("read", str(p))] == "ENOENT", p  # the uploader's credentials and the owner's key do not exist
    assert r[("ls", str(d))] == ["crypto", "keys", "run"] and r[("ls", str(d / "spool"))] == "ENOENT"
    assert r[("write", str(d / "crypto" / "probe"))] == "ok"  # its chain state
    assert r[("write", str(d / "probe"))] == "EROFS"
    assert r[("env", FTP_ENV)] is None and r[("env", OTHER_ENV)] is None


def test_uploader_sandbox_has_network_but_no_plaintext_bus_or_hub_key(running: Any, listener: int) -> None:
    need_bwrap()
    sup, eff, f = running
    d = sup.data_dir
    r = probe(sup, eff, "uploader", checks_for(sup, f, listener))
    assert r[("tcp", "127.0.0.1", listener)] == "ok"  # egress: the host's network
    assert r[("bus", str(d / "run" / "plain.sock"))] == "ENOENT"
    assert r[("bus", str(d / "run" / "sealed.sock"))].startswith("-NOAUTH")
    assert r[("read", str(d / "keys" / "hub.key"))] == "ENOENT"
    for p in (f["s3_id"], f["s3_secret"], d / "keys" / "bus" / "sealed-uploader.pass"):
        assert r[("read", str(p))] == "ok", p
    for p in (f["webhook"], f["cam_pass"], d / "keys" / "bus" / "plain-crypto.pass", d / "keys" / "owner.identity"):
        assert r[("read", str(p))] == "ENOENT", p
    assert r[("write", str(d / "spool" / "probe"))] == "ok" and r[("write", str(d / "crypto" / "probe"))] == "ENOENT"
    assert r[("write", str(d / "probe"))] == "EROFS"
    assert r[("env", FTP_ENV)] == "ftp-pw" and r[("env", OTHER_ENV)] is None


def test_recorder_and_watchdog_sandboxes(running: Any, listener: int) -> None:
    need_bwrap()
    sup, eff, f = running
    d = sup.data_dir
    rec = probe(sup, eff, "recorder", checks_for(sup, f, listener))
    assert rec[("tcp", "127.0.0.1", listener)] == "ok"  # cameras
    assert rec[("bus", str(d / "run" / "sealed.sock"))] == "ENOENT"
    assert rec[("bus", str(d / "run" / "plain.sock"))].startswith("-NOAUTH")
    assert rec[("read", str(f["cam_pass"]))] == "ok" and rec[("read", str(d / "keys" / "hub.key"))] == "ENOENT"
    assert rec[("read", str(f["s3_id"]))] == "ENOENT"
    wd = probe(sup, eff, "watchdog", checks_for(sup, f, listener))
    assert wd[("bus", str(d / "run" / "plain.sock"))] == "ENOENT"
    assert wd[("bus", str(d / "run" / "sealed.sock"))].startswith("-NOAUTH")
    assert wd[("read", str(f["webhook"]))] == "ok" and wd[("read", str(f["s3_secret"]))] == "ENOENT"
    assert wd[("ls", str(d / "spool"))] == "ENOENT"


# ------------------------------------------------------------------------------------------------ end to end
def test_up_sandboxed_records_verified_footage(tmp_path: Path) -> None:
    need_bwrap()
    data = tmp_path / "data"
    up = subprocess.run([*SEALCAM, "up", "--sandbox", "--data-dir", str(data), "--for", "20s"],
                        capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stderr[-4000:]  # 0: every service stopped cleanly on SIGTERM, none killed
    for svc in ("crypto", "uploader", "watchdog", "recorder"):
        assert f"{svc}: sandboxed (bwrap" in up.stderr, svc
    assert "crypto: sandboxed (bwrap, network none, buses plain.sock, sealed.sock" in up.stderr
    ver = subprocess.run([*SEALCAM, "verify", "--json", "--signer", str(data / "keys" / "hub.key"),
                          str(data / "remote")], capture_output=True, text=True, timeout=120)
    rep = json.loads(ver.stdout)
    assert ver.returncode == 0 and rep["ok"] and rep["files"], ver.stdout[-2000:] + ver.stderr[-2000:]
    assert all(f["records"] >= 5 for f in rep["files"]), rep["files"]
