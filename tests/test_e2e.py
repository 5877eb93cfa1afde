"""End to end through `sealcam up`: an RTSP camera emulator -> recorder (-c copy) -> crypto -> uploader -> a
local folder, then the owner's verify and decrypt, checked with ffprobe. Real processes and servers only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from rtsp_server import available, rtsp_camera
from upctl import run_cli


def test_rtsp_camera_to_verified_decryptable_remote(tmp_path: Path) -> None:
    assert available() is None, available()
    data = tmp_path / "data"
    # First run with no config makes the keys and a default config; then point it at the RTSP camera.
    first = run_cli("up", "--data-dir", str(data), "--for", "1s")
    assert first.returncode == 0, first.stdout + first.stderr
    # The recording run gets a data dir of its own (its own spool and remote), reusing the first run's keys.
    run_dir = tmp_path / "run"
    cfg = yaml.safe_load((data / "config.yml").read_text())
    cfg["data_dir"] = str(run_dir)
    cfg["storage"][0]["path"] = str(run_dir / "remote")
    cfg["recording"]["segment_seconds"] = 10
    cfg_path = tmp_path / "porch.yml"
    with rtsp_camera() as cam:
        cfg["cameras"][0]["id"] = "porch"
        cfg["cameras"][0]["inputs"] = [{"url": cam.url, "roles": ["record"]}]
        cfg_path.write_text(yaml.safe_dump(cfg))
        up = run_cli("up", "--config", str(cfg_path), "--data-dir", str(run_dir), "--for", "25s")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]

    remote = run_dir / "remote"
    signer = data / "keys" / "hub.key"
    ver = run_cli("verify", "--json", "--signer", str(signer), str(remote))
    rep = json.loads(ver.stdout)
    assert ver.returncode == 0 and rep["ok"], ver.stdout + ver.stderr
    files = rep["files"]
    assert len(files) >= 2, "10 s segments over 25 s must rotate at least once"
    assert sorted(f["seq"] for f in files) == list(range(len(files)))
    assert len({f["camera_handle"] for f in files}) == 1
    assert not any("porch" in p.name for p in remote.rglob("*")), "the camera's name must not reach storage"

    out = tmp_path / "out.mp4"
    dec = run_cli("decrypt", "--identity", str(data / "keys" / "owner.identity"), "--signer", str(signer),
               "-o", str(out), str(remote))
    assert dec.returncode == 0, dec.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=codec_name,width,nb_read_frames", "-of", "json", str(out)],
                           capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264" and stream["width"] == 320
    frames = int(stream["nb_read_frames"])
    assert 15 * 10 <= frames <= 27 * 10, f"{frames} frames at 10 fps for a ~25 s recording"
    errors = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"],
                            capture_output=True, text=True)
    assert errors.returncode == 0 and not errors.stderr.strip(), errors.stderr[:500]
