"""End to end with motion: an RTSP camera emulator showing a moving object -> `sealcam up` (recorder, motion,
crypto, uploader, watchdog) -> a local folder as the remote -> `sealcam verify` and `sealcam decrypt --events
--extract` recover the sealed EVENT and THUMBNAIL records. Then recording mode `events`: a scripted camera with
two bursts of motion leaves footage only around them on the remote, with a signed NOT_RECORDING gap between.
Real processes and servers only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from rtsp_server import RtspCamera, available
from upctl import run_cli

S = 1_000_000


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=timeout)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A first run with no config makes the keys and a default config."""
    assert available() is None, available()
    data = tmp_path_factory.mktemp("first") / "data"
    first = _run("up", "--data-dir", str(data), "--for", "1s")
    assert first.returncode == 0, first.stdout + first.stderr
    return data


def _config(keys_dir: Path, run_dir: Path, url: str, **recording: object) -> Path:
    cfg = yaml.safe_load((keys_dir / "config.yml").read_text())
    cfg["data_dir"] = str(run_dir)
    cfg["storage"][0]["path"] = str(run_dir / "remote")
    cfg["recording"] = {"segment_seconds": 10, **recording}
    cfg["cameras"][0]["id"] = "porch"
    cfg["cameras"][0]["inputs"] = [{"url": url, "roles": ["record"]}]
    cfg["motion"] = {"end_seconds": 1.5, "min_seconds": 0.2, "tamper": {"enabled": False}}
    path = run_dir.parent / "porch.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _decrypt(keys_dir: Path, remote: Path, out: Path) -> tuple[list[dict], list[Path]]:
    events, extract = out / "events.jsonl", out / "extract"
    dec = _run("decrypt", "--identity", str(keys_dir / "keys" / "owner.identity"), "--signer",
               str(keys_dir / "keys" / "hub.key"), "--events", str(events), "--extract", str(extract),
               "-o", str(out / "all.mp4"), str(remote))
    assert dec.returncode == 0, dec.stderr
    return [json.loads(x) for x in events.read_text().splitlines()], sorted(extract.glob("*.jpg"))


def _jpeg_size(path: Path) -> tuple[int, int]:
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of",
                            "json", str(path)], capture_output=True, text=True, check=True)
    st = json.loads(probe.stdout)["streams"][0]
    assert st["codec_name"] == "mjpeg", st
    return st["width"], st["height"]


def _verify(keys_dir: Path, remote: Path) -> dict:
    ver = _run("verify", "--json", "--signer", str(keys_dir / "keys" / "hub.key"), str(remote))
    rep = json.loads(ver.stdout)
    assert ver.returncode == 0 and rep["ok"], ver.stdout + ver.stderr
    return rep


def test_moving_object_gives_sealed_event_and_thumbnail(keys_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RtspCamera() as cam:  # the bouncing ball
        cfg = _config(keys_dir, run_dir, cam.url)
        up = _run("up", "--config", str(cfg), "--data-dir", str(run_dir), "--for", "20s")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "motion" in (run_dir / "logs").joinpath("motion.log").read_text()
    remote = run_dir / "remote"
    _verify(keys_dir, remote)
    assert not any("porch" in p.name for p in remote.rglob("*"))
    blob = b"".join(p.read_bytes() for p in remote.rglob("*.seal"))
    assert b"motion" not in blob and b"porch" not in blob  # labels and camera only inside the ciphertext

    events, jpgs = _decrypt(keys_dir, remote, tmp_path)
    motion = [e for e in events if e["t"] == "motion" and e["kind"] in ("motion", "object")]
    assert motion, events
    first = motion[0]["event_id"]
    phases = [e["phase"] for e in motion if e["event_id"] == first]
    assert phases[0] == "start" and phases[-1] == "end", phases  # motion ends open events when stopped
    end = next(e for e in motion if e["event_id"] == first and e["phase"] == "end")
    assert end["label"] and end["start_us"] <= end["end_us"] and isinstance(end["detail"], dict)
    thumbs = [e for e in events if e["t"] == "thumb" and e["event_id"] == first]
    assert len(thumbs) == 1
    jpg = next(p for p in jpgs if p.stem.endswith(first))
    assert jpg.stat().st_size == thumbs[0]["bytes"]
    w, h = _jpeg_size(jpg)
    assert w > 0 and h > 0


# A static test card (motion needs texture to learn a background) with a white box that moves across it only
# from 8 to 12 s and from 26 to 30 s of the stream.
_BURSTS = "between(t,8,12)+between(t,26,30)"
_SCRIPT = ("smptebars=s=320x240:r=10:d=45[bg];color=c=white:s=48x48:r=10:d=45[box];"
           f"[bg][box]overlay=x='if({_BURSTS},20+mod(t,4)*60,-100)':y=96:eval=frame")


@pytest.fixture(scope="module")
def scripted_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("script") / "bursts.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", _SCRIPT, "-c:v", "libx264",
                    "-preset", "ultrafast", "-bf", "0", "-g", "10", "-pix_fmt", "yuv420p", "-movflags",
                    "+faststart", str(out)], check=True, timeout=120)
    return out


def test_events_mode_keeps_footage_only_around_events(keys_dir: Path, scripted_video: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    pipeline = (f"( filesrc location={scripted_video} ! qtdemux ! h264parse ! "
                "rtph264pay name=pay0 pt=96 config-interval=1 )")
    with RtspCamera(pipeline=pipeline) as cam:
        cfg = _config(keys_dir, run_dir, cam.url, mode="events", pre_roll_seconds=2, post_roll_seconds=2)
        up = _run("up", "--config", str(cfg), "--data-dir", str(run_dir), "--for", "40s")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    remote = run_dir / "remote"
    rep = _verify(keys_dir, remote)
    gaps = [g for g in rep["gaps"] if g["reason"] == "not-recording"]
    assert len(gaps) == 1, rep["gaps"]  # between the two bursts, declared and signed: an honest gap

    events, jpgs = _decrypt(keys_dir, remote, tmp_path)
    starts = [e for e in events if e["t"] == "motion" and e["phase"] == "start" and e["kind"] != "tamper"]
    ends = [e for e in events if e["t"] == "motion" and e["phase"] == "end" and e["kind"] != "tamper"]
    assert len(starts) >= 2 and len(ends) >= 2, events
    assert len(jpgs) >= 2
    # footage kept: about the two bursts (4 s each) plus pre/post roll and detection delay, not the 40 s
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_packets", "-of", "json", str(tmp_path / "all.mp4")],
                           capture_output=True, text=True, check=True)
    kept_s = int(json.loads(probe.stdout)["streams"][0]["nb_read_packets"]) / 10
    assert 8 <= kept_s <= 26, kept_s
    # the gap lies after the first burst's event and before the second's
    import datetime as dt

    def us(text: str) -> int:
        return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * S)

    first_end = min(e["end_us"] for e in ends)
    assert first_end <= us(gaps[0]["from"]) + S and us(gaps[0]["until"]) <= starts[-1]["start_us"], (gaps, events)
