"""The motion service against a real plain bus: fMP4 fragments of a clip with a moving box in, MotionEvents and
a JPEG thumbnail out; health, heartbeat, detect-only streams, a clean stop, and `python -m services.motion`."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from sealcam.bus import names  # noqa: E402
from sealcam.bus.client import connect  # noqa: E402
from sealcam.bus.contract import Health, MotionEvent, Thumbnail, VideoFragment  # noqa: E402
from sealcam.config.motion import MotionSettings  # noqa: E402
from sealcam.media.fmp4 import iter_fragments  # noqa: E402
from services.motion.service import CameraWorker, MotionService  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
ROOT = Path(__file__).resolve().parent.parent
US = 1_000_000
BASE = 1_760_000_000 * US
W, H, FPS = 320, 180, 10


def moving_box_clip(seconds: int = 8, box_from: float = 2.0, box_to: float = 5.0) -> list:
    """A quiet textured scene; a dark box crosses it between box_from and box_to seconds."""
    rng = np.random.default_rng(3)
    bg = cv2.resize(rng.integers(60, 200, (H // 10, W // 10)).astype(np.uint8), (W, H),
                    interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(seconds * FPS):
        t = i / FPS
        f = bg.astype(np.int16) + rng.normal(0, 3, bg.shape).astype(np.int16)
        if box_from <= t < box_to:
            x = int((t - box_from) / (box_to - box_from) * (W - 50))
            f[60:130, x:x + 40] = 15
        frames.append(cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR))
    out = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
                          "-s", f"{W}x{H}", "-r", str(FPS), "-i", "pipe:0", "-c:v", "libx264", "-preset",
                          "ultrafast", "-pix_fmt", "yuv420p", "-g", str(FPS), "-f", "mp4", "-movflags",
                          "+frag_keyframe+empty_moov+default_base_moof", "pipe:1"],
                         input=b"".join(f.tobytes() for f in frames), capture_output=True, check=True).stdout
    return list(iter_fragments(io.BytesIO(out)))


def publish(r, stream: str, frags: list, cam: str = "cam1") -> None:  # noqa: ANN001
    for i, f in enumerate(frags):
        cap = BASE + max(0, i - 1) * US
        r.xadd(stream, VideoFragment(cam, i, cap, f.keyframe, f.kind, f.data).to_fields())


def wait_for(pred, timeout: float = 20.0) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def motion_events(r, cam: str = "cam1") -> list[MotionEvent]:  # noqa: ANN001
    return [MotionEvent.from_fields(f) for _i, f in r.xrange(names.plain_event(cam))]


@pytest.fixture(scope="module")
def clip() -> list:
    return moving_box_clip()


def run_service(r, workers: list[CameraWorker]) -> tuple[MotionService, threading.Thread]:  # noqa: ANN001
    svc = MotionService(r, workers, instance="t1", health_interval_s=0.2)
    t = threading.Thread(target=svc.run, daemon=True)
    t.start()
    return svc, t


def test_events_and_thumbnail_on_the_bus(plain_bus, clip: list) -> None:  # noqa: ANN001
    r = connect(plain_bus.url)
    settings = MotionSettings(detect_width=320, end_seconds=1.0)
    svc, t = run_service(r, [CameraWorker("cam1", settings, r, consumer="motion-t1")])
    try:
        publish(r, names.plain_frag("cam1"), clip)
        assert wait_for(lambda: [e.phase for e in motion_events(r)] == ["start", "end"])
    finally:
        svc.stop()
        t.join(20)
    assert not t.is_alive()
    evs = motion_events(r)
    start, end = evs
    assert start.event_id == end.event_id and start.kind == "motion"
    assert 2.0 <= (start.start_us - BASE) / US <= 2.8
    assert 4.6 <= (end.end_us - BASE) / US <= 5.4
    thumbs = [Thumbnail.from_fields(f) for _i, f in r.xrange(names.plain_thumb("cam1"))]
    assert len(thumbs) == 1 and thumbs[0].event_id == start.event_id
    assert start.start_us <= thumbs[0].at_us <= end.end_us
    img = cv2.imdecode(np.frombuffer(thumbs[0].data, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (180, 320, 3)
    # health and heartbeat
    health = [Health.from_fields(f) for _i, f in r.xrange(names.PLAIN_HEALTH)]
    mine = [h for h in health if h.service == "motion" and h.camera == "cam1"]
    assert mine and max(h.counters["frames"] for h in mine) >= 30
    assert r.get(names.heartbeat_key("motion", "t1")) is not None
    # everything read was acknowledged
    assert r.xpending(names.plain_frag("cam1"), names.GROUP_MOTION)["pending"] == 0


def test_detect_only_stream_and_stop_ends_open_events(plain_bus, clip: list) -> None:  # noqa: ANN001
    """Fragments on plain:detect (the camera's detect input); stopped mid-event, the event still ends."""
    r = connect(plain_bus.url)
    settings = MotionSettings(detect_width=320, end_seconds=30.0)
    w = CameraWorker("cam1", settings, r, detect_only=True, consumer="motion-t1")
    svc, t = run_service(r, [w])
    try:
        publish(r, names.plain_detect("cam1"), clip[:6])  # init + 5 s: the box is still moving at the end
        assert wait_for(lambda: [e.phase for e in motion_events(r)] == ["start"])
        assert r.xlen(names.plain_frag("cam1")) == 0
    finally:
        svc.stop()
        t.join(20)
    assert [e.phase for e in motion_events(r)] == ["start", "end"]
    assert r.xlen(names.plain_thumb("cam1")) == 1


def test_a_restarted_service_finds_the_init_segment(plain_bus, clip: list) -> None:  # noqa: ANN001
    """The group already read the init segment (ACKed) before a restart: it is looked up on the stream."""
    r = connect(plain_bus.url)
    stream = names.plain_frag("cam1")
    r.xgroup_create(stream, names.GROUP_MOTION, id="0", mkstream=True)
    publish(r, stream, clip[:1])
    r.xreadgroup(names.GROUP_MOTION, "old", {stream: ">"})  # a previous run consumed the init
    settings = MotionSettings(detect_width=320, end_seconds=1.0)
    svc, t = run_service(r, [CameraWorker("cam1", settings, r, consumer="motion-t1")])
    try:
        for i, f in enumerate(clip[1:], start=1):
            r.xadd(stream, VideoFragment("cam1", i, BASE + (i - 1) * US, f.keyframe, f.kind, f.data).to_fields())
        assert wait_for(lambda: [e.phase for e in motion_events(r)] == ["start", "end"])
    finally:
        svc.stop()
        t.join(20)


def test_a_restarted_service_uses_the_kept_init_once_the_stream_is_trimmed(plain_bus, clip: list) -> None:  # noqa: ANN001
    """The init entry was trimmed off the stream long ago: the copy the recorder keeps beside it is used."""
    r = connect(plain_bus.url)
    stream = names.plain_frag("cam1")
    r.xgroup_create(stream, names.GROUP_MOTION, id="$", mkstream=True)
    r.hset(names.plain_init(stream), mapping=VideoFragment("cam1", 0, BASE, False, "init", clip[0].data).to_fields())
    settings = MotionSettings(detect_width=320, end_seconds=1.0)
    svc, t = run_service(r, [CameraWorker("cam1", settings, r, consumer="motion-t1")])
    try:
        for i, f in enumerate(clip[1:], start=1):
            r.xadd(stream, VideoFragment("cam1", i, BASE + (i - 1) * US, f.keyframe, f.kind, f.data).to_fields())
        assert not any(f[b"kind"] == b"init" for _i, f in r.xrange(stream))
        assert wait_for(lambda: [e.phase for e in motion_events(r)] == ["start", "end"])
    finally:
        svc.stop()
        t.join(20)


def test_malformed_entries_are_refused(plain_bus, clip: list) -> None:  # noqa: ANN001
    r = connect(plain_bus.url)
    stream = names.plain_frag("cam1")
    r.xadd(stream, {b"v": b"1", b"t": b"frag", b"camera": b"cam1"})  # missing fields
    r.xadd(stream, VideoFragment("cam2", 0, BASE, False, "init", clip[0].data).to_fields())  # wrong camera
    svc, t = run_service(r, [CameraWorker("cam1", MotionSettings(end_seconds=1.0), r)])
    try:
        publish(r, stream, clip)
        assert wait_for(lambda: [e.phase for e in motion_events(r)] == ["start", "end"])
    finally:
        svc.stop()
        t.join(20)


def write_config(tmp_path: Path, plain_url: str, extra: str = "") -> Path:
    cfg = tmp_path / "sealcam.yml"
    cfg.write_text(f"""
data_dir: {tmp_path / 'data'}
cameras:
  - id: cam1
    inputs: [{{url: "synthetic://a?size=320x180&fps=10", roles: [record, detect]}}]
recipients: [{tmp_path / 'owner.recipient'}]
storage: [{{type: local, path: {tmp_path / 'remote'}}}]
hub: {{signing_key_file: {tmp_path / 'hub.key'}}}
buses: {{plain_url: "{plain_url}"}}
motion: {{detect_width: 320, end_seconds: 1.0}}
{extra}
""")
    return cfg


def test_main_runs_and_stops_on_sigterm(plain_bus, clip: list, tmp_path: Path) -> None:  # noqa: ANN001
    cfg = write_config(tmp_path, plain_bus.url)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "services.motion", "--config", str(cfg), "--instance", "m1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    r = connect(plain_bus.url)
    try:
        assert wait_for(lambda: r.get(names.heartbeat_key("motion", "m1")) is not None)
        publish(r, names.plain_frag("cam1"), clip[:5])  # the box is mid-frame when we stop
        assert wait_for(lambda: [e.phase for e in motion_events(r)] == ["start"])
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert [e.phase for e in motion_events(r)] == ["start", "end"]


def test_main_config_errors_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("cameras: []\nmotion: {blur: 4}\n")
    p = subprocess.run([sys.executable, "-m", "services.motion", "--config", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "motion:" in p.stderr and "blur" in p.stderr
    cfg = write_config(tmp_path, "unix:///nonexistent/plain.sock")
    p = subprocess.run([sys.executable, "-m", "services.motion", "--config", str(cfg), "--camera", "nope"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "unknown camera" in p.stderr
