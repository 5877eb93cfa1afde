"""End to end through `sealcam up` with real storage servers started here (tests/servers.py): an RTSP camera
emulator -> recorder -> crypto -> uploader -> SFTP (OpenSSH sshd) and S3 (SeaweedFS, Object Lock), with the
storage taken away for 30 s mid-recording; and `kill -9` of crypto and of the uploader mid-stream. Each ends
with the owner's verify and decrypt on what the remote holds, compared byte for byte with the uploader's spool.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from rtsp_server import available, rtsp_camera
from servers import Sshd, seaweedfs, seaweedfs_available, sshd_available, wait_until
from upctl import run_cli, running_up, service_logs, service_pid

FPS = 10  # the emulator's frame rate


def _finish(up: subprocess.Popen, data: Path, timeout: float = 60) -> None:
    out = up.communicate(timeout=timeout)[0]
    assert up.returncode == 0, out[-3000:] + service_logs(data)


def _firstrun_cli(tmp_path: Path) -> tuple[Path, dict]:
    """Keys and a default config from a first `sealcam up` with no config (as the README's first run), in a data
    dir of its own; returns the data dir for the recording run (its own spool, remote and sealed bus, reusing the
    first run's keys) and a config for it. So only the RTSP camera's segments are compared: the 1 s run's
    synthetic segment can still sit unread on that run's sealed bus."""
    first = tmp_path / "first"
    run = run_cli("up", "--data-dir", str(first), "--for", "1s")
    assert run.returncode == 0, run.stdout + run.stderr
    data = tmp_path / "data"
    cfg = yaml.safe_load((first / "config.yml").read_text())
    cfg["data_dir"] = str(data)
    cfg["storage"][0]["path"] = str(data / "remote")
    cfg["recording"]["segment_seconds"] = 10
    cfg["cameras"][0]["id"] = "porch"
    return data, cfg


def _keys(data: Path) -> Path:
    return data.parent / "first" / "keys"


def _spool(data: Path) -> dict[str, tuple[bytes, bool]]:
    """The uploader's spool: object name -> (bytes, complete)."""
    root, done = data / "spool", data / "spool.done"
    return {p.relative_to(root).as_posix(): (p.read_bytes(), (done / p.relative_to(root)).exists())
            for p in root.rglob("*.seal") if p.is_file()}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.seal") if p.is_file()}


def _verify(data: Path, remote: Path) -> dict:
    ver = run_cli("verify", "--json", "--signer", str(_keys(data) / "hub.key"), str(remote))
    rep = json.loads(ver.stdout)
    assert ver.returncode == 0 and rep["ok"], ver.stdout[-4000:] + ver.stderr
    return rep


def _decrypt_frames(data: Path, remote: Path, out: Path) -> int:
    dec = run_cli("decrypt", "--identity", str(_keys(data) / "owner.identity"), "--signer",
               str(_keys(data) / "hub.key"), "-o", str(out), str(remote))
    assert dec.returncode == 0, dec.stdout[-2000:] + dec.stderr[-2000:]
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=codec_name,width,nb_read_frames", "-of", "json", str(out)],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[:1000]
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264" and stream["width"] == 320
    return int(stream["nb_read_frames"])


def _check_seqs(rep: dict) -> None:
    """One camera, seq 0..n-1 each exactly once (no duplicates, no missing object)."""
    seqs = sorted(f["seq"] for f in rep["files"])
    assert len({f["camera_handle"] for f in rep["files"]}) == 1
    assert seqs == list(range(len(seqs))), f"seqs {seqs}"



# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _watchdog_any_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog's /healthz on any free port, so these runs never collide with another `sealcam up`."""
    monkeypatch.setenv("SEALCAM_WATCHDOG_PORT", "0")


@pytest.fixture
def servers_available() -> None:
    for why in (available(), sshd_available(), seaweedfs_available()):
        if why:
            pytest.skip(why)


def test_rtsp_to_sftp_and_s3_through_a_30s_storage_outage(tmp_path: Path, servers_available) -> None:  # noqa: ANN001
    data, cfg = _firstrun_cli(tmp_path)
    sremote = tmp_path / "sftp-remote"
    sshd = Sshd(tmp_path / "sshd")
    sshd.start()
    try:
        with seaweedfs(tmp_path / "weed") as sw, rtsp_camera() as cam:
            cfg["cameras"][0]["inputs"] = [{"url": cam.url, "roles": ["record"]}]
            cfg["storage"] = [
                {"type": "sftp", "name": "sftp-main", "host": "127.0.0.1", "port": sshd.port, "user": "root",
                 "path": str(sremote), "key_file": str(sshd.key_file), "known_hosts_file": str(sshd.known_hosts)},
                {"type": "s3", "name": "s3-locked", "endpoint_url": sw["url"], "bucket": "locked",
                 "prefix": "cams/", "access_key_id_file": str(sw["dir"] / "ak"),
                 "secret_access_key_file": str(sw["dir"] / "sk"),
                 "object_lock": {"mode": "governance", "days": 1}}]
            cfg_path = tmp_path / "storage.yml"
            cfg_path.write_text(yaml.safe_dump(cfg))
            check = run_cli("config", "check", str(cfg_path))
            assert check.returncode == 0, check.stdout + check.stderr

            record_s = 48
            t0 = time.monotonic()
            with running_up(cfg_path, data, record_s) as up:
                # live: the first fragments reach the SFTP server before the outage
                assert wait_until(lambda: any(sremote.rglob("*.seal")), 15), service_logs(data)
                time.sleep(max(0.0, 8 - (time.monotonic() - t0)))
                sshd.stop()  # storage down for 30 s while the camera keeps recording
                time.sleep(30)
                behind = sum(len(b) for b, _ in _spool(data).values()) - sum(map(len, _tree(sremote).values()))
                sshd.start()  # same port and host key
                _finish(up, data)
            elapsed = time.monotonic() - t0

            spool = _spool(data)
            assert spool, "nothing spooled"
            assert all(done for _, done in spool.values()), f"unfinished in the spool after a clean stop: {spool}"
            # SFTP: the same objects as the spool, byte for byte
            got = _tree(sremote)
            sizes = {n: (len(spool[n][0]) if n in spool else None, len(got[n]) if n in got else None)
                     for n in sorted({*spool, *got})}
            bad = [n for n in sizes if got.get(n) != (spool[n][0] if n in spool else None)]
            assert not bad, f"SFTP differs from the spool (spool bytes, SFTP bytes): {sizes}\n" + service_logs(data)
            # S3: every complete object, downloaded with boto3, no leftover parts
            c = sw["client"]
            keys = [o["Key"] for page in c.get_paginator("list_objects_v2").paginate(Bucket="locked", Prefix="cams/")
                    for o in page.get("Contents", [])]
            whole = sorted(k.removeprefix("cams/") for k in keys if ".parts/" not in k)
            assert whole == sorted(spool), f"S3 holds {whole}; spool {sorted(spool)}\n" + service_logs(data)
            s3copy = tmp_path / "s3-copy"
            for n in whole:
                (s3copy / n).parent.mkdir(parents=True, exist_ok=True)
                (s3copy / n).write_bytes(c.get_object(Bucket="locked", Key="cams/" + n)["Body"].read())
                ret = c.get_object_retention(Bucket="locked", Key="cams/" + n)["Retention"]
                assert ret["Mode"] == "GOVERNANCE"
            assert _tree(s3copy) == {n: b for n, (b, _) in spool.items()}
    finally:
        sshd.stop()

    assert behind > 100_000, f"the SFTP remote should have fallen behind the spool during the outage ({behind} B)"
    assert not any("porch" in p.name for p in (*sremote.rglob("*"), *s3copy.rglob("*")))
    frames = []
    for i, remote in enumerate((sremote, s3copy)):
        rep = _verify(data, remote)
        _check_seqs(rep)
        assert len(rep["files"]) >= 3, "10 s segments over ~45 s must rotate"
        assert rep["gaps"] == [], rep["gaps"]  # an outage of the storage loses nothing: no gap to declare
        frames.append(_decrypt_frames(data, remote, tmp_path / f"out{i}.mp4"))
    assert frames[0] == frames[1]
    # frames ~ recording time x fps: `up` ran `record_s` (minus start-up: buses, services, the RTSP connect)
    assert (record_s - 12) * FPS <= frames[0] <= (elapsed + 2) * FPS, f"{frames[0]} frames over {record_s} s"
    errors = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "out0.mp4"), "-f", "null", "-"],
                            capture_output=True, text=True)
    assert errors.returncode == 0 and not errors.stderr.strip(), errors.stderr[:500]


def test_kill_9_crypto_and_uploader_mid_stream(tmp_path: Path) -> None:
    if why := available():
        pytest.skip(why)
    data, cfg = _firstrun_cli(tmp_path)
    remote = Path(cfg["storage"][0]["path"])  # the default local folder remote
    with rtsp_camera() as cam:
        cfg["cameras"][0]["inputs"] = [{"url": cam.url, "roles": ["record"]}]
        cfg_path = tmp_path / "kill.yml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        t0 = time.monotonic()
        with running_up(cfg_path, data, 40) as up:
            # kill crypto mid-way through the first 10 s segment (~4 s after its first fragment reached the remote)
            assert wait_until(lambda: len(_tree(remote)) >= 1, 30), service_logs(data)
            time.sleep(4)
            crypto = _service_pid(data, "services.crypto")
            os.kill(crypto, signal.SIGKILL)
            assert wait_until(lambda: service_pid(data, "services.crypto") not in (None, crypto), 15), \
                "the supervisor did not restart crypto\n" + service_logs(data)
            time.sleep(6)
            uploader = _service_pid(data, "services.uploader")
            os.kill(uploader, signal.SIGKILL)
            assert wait_until(lambda: service_pid(data, "services.uploader") not in (None, uploader), 15), \
                "the supervisor did not restart the uploader\n" + service_logs(data)
            assert time.monotonic() - t0 < 38, "the kills must land while `up` is still recording"
            _finish(up, data)

    assert "starting crypto (restart 1)" in (data / "logs" / "crypto.log").read_text(errors="replace")
    assert "starting uploader (restart 1)" in (data / "logs" / "uploader.log").read_text(errors="replace")
    spool = _spool(data)
    got = _tree(remote)
    # every record the uploader acknowledged (spooled, fsynced) is on the remote, byte for byte
    missing = sorted(set(spool) - set(got))
    assert not missing, f"acknowledged but not on the remote: {missing}\n" + service_logs(data)
    assert sorted(got) == sorted(spool), f"on the remote but never spooled: {sorted(set(got) - set(spool))}"
    bad = [n for n, (b, done) in spool.items() if done and got[n] != b]
    assert not bad, f"complete objects that differ from the spool: {bad}"
    for n, (b, done) in spool.items():
        if not done:  # the segment crypto never finished: the remote holds exactly what was spooled
            assert got[n] == b, n

    rep = _verify(data, remote)
    _check_seqs(rep)  # no duplicates: each seq once, every object contiguous (verify checks offsets/records)
    gaps = rep["gaps"]
    assert gaps, "the segment cut short by kill -9 must be declared as a sealed gap"
    assert any(g["reason"] == "restart" for g in gaps), gaps
    frames = _decrypt_frames(data, remote, tmp_path / "out.mp4")
    assert frames >= 15 * FPS, f"{frames} frames"


def _service_pid(data: Path, module: str) -> int:
    pid = service_pid(data, module)
    assert pid is not None, f"{module} is not running for {data}"
    return pid
