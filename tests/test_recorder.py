"""Recorder: ffmpeg command lines, backoff, fragment mapping (pure); then real ffmpeg -> real plain bus, from
the synthetic source (as `python -m services.recorder`) and from an RTSP camera emulator (lost / back)."""

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

import pytest

from sealcam.bus import names
from sealcam.bus.contract import FeedEvent, Health, VideoFragment
from sealcam.media.fmp4 import Fragment, iter_fragments
from services.recorder import ffmpeg_cmd
from services.recorder.backoff import Backoff
from services.recorder.feed import FeedMapper
from services.recorder.service import CameraWorker, Recorder

sys.path.insert(0, str(Path(__file__).parent))
import rtsp_server  # noqa: E402

HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg not installed")
OUT_FLAGS = ["-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer",
             "-frag_duration", "1000000", "-flush_packets", "1", "pipe:1"]
PW = "s3cr:et/p@ss w"


# --- ffmpeg command lines --------------------------------------------------------------------------------
def test_rtsp_argv_copies_video_only_and_masks_password() -> None:
    cmd = ffmpeg_cmd.build_command("rtsp://admin@192.168.1.20:554/stream1", PW)
    a = cmd.argv
    assert a[:5] == ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    assert a[a.index("-rtsp_transport") + 1] == "tcp"
    url = a[a.index("-i") + 1]
    assert url == "rtsp://admin:s3cr%3Aet%2Fp%40ss%20w@192.168.1.20:554/stream1"
    assert a[a.index("-i") + 1:a.index("-i") + 6] == [url, "-map", "0:v:0", "-c", "copy"]
    assert a[-len(OUT_FLAGS):] == OUT_FLAGS
    assert "libx264" not in a
    logged = cmd.log_form()
    assert PW not in logged and "s3cr%3Aet" not in logged and "***" in logged
    assert "rtsp://admin:***@192.168.1.20:554/stream1" in logged
    assert PW not in repr(cmd)
    assert cmd.mask(f"[rtsp @ 0x1] method DESCRIBE failed: 401 Unauthorized {url}") == (
        "[rtsp @ 0x1] method DESCRIBE failed: 401 Unauthorized rtsp://admin:***@192.168.1.20:554/stream1")
    # no password: URL unchanged
    assert ffmpeg_cmd.build_command("rtsp://cam.lan/s").argv[ffmpeg_cmd.build_command("rtsp://cam.lan/s").argv
                                                             .index("-i") + 1] == "rtsp://cam.lan/s"


def test_v4l2_argv_encodes_h264() -> None:
    a = ffmpeg_cmd.build_command("v4l2:///dev/video2", v4l2_input_format="mjpeg").argv
    i = a.index("-i")
    assert a[i - 4:i + 2] == ["-f", "v4l2", "-input_format", "mjpeg", "-i", "/dev/video2"]
    assert a[a.index("-c:v") + 1] == "libx264"
    assert a[a.index("-preset") + 1] == "ultrafast" and a[a.index("-tune") + 1] == "zerolatency"
    assert a[a.index("-force_key_frames") + 1] == "expr:gte(t,n_forced*1)"
    assert a[-len(OUT_FLAGS):] == OUT_FLAGS
    assert "-input_format" not in ffmpeg_cmd.build_command("v4l2:///dev/video0").argv


def test_synthetic_argv() -> None:
    cmd = ffmpeg_cmd.build_command("synthetic://demo?size=640x360&fps=12", fontfile="/fonts/x.ttf")
    a = cmd.argv
    assert a[a.index("-f") + 1] == "lavfi" and "-re" in a
    graph = a[a.index("-i") + 1]
    assert graph.startswith("smptehdbars=size=640x360:rate=12[bg];color=c=white:size=45x45:rate=12,")
    assert "[bg][box]overlay=x='(W-w)*min(mod(t\\,20)\\,10)/10'" in graph
    assert "drawtext=fontfile='/fonts/x.ttf':text='%{localtime}'" in graph
    assert a[a.index("-g") + 1] == "12" and a[a.index("-c:v") + 1] == "libx264"
    assert a[-len(OUT_FLAGS):] == OUT_FLAGS
    no_font = ffmpeg_cmd.build_command("synthetic://demo?size=640x360&fps=12", fontfile=None).argv
    assert "drawtext" not in no_font[no_font.index("-i") + 1]
    assert ffmpeg_cmd.synthetic_params("synthetic://x") == (1280, 720, 15)


def _run_to_fragments(argv: list[str], timeout: float = 30) -> tuple[list[Fragment], bytes]:
    out = subprocess.run(argv, capture_output=True, timeout=timeout, check=True).stdout
    return list(iter_fragments(io.BytesIO(out))), out


def _ffprobe_h264(data: bytes, tmp_path: Path) -> dict[str, str]:
    f = tmp_path / "probe.mp4"
    f.write_bytes(data)  # test output only
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                        "stream=codec_name,width,height,nb_read_packets", "-of", "default=nw=1", str(f)],
                       capture_output=True, text=True, timeout=30, check=True)
    return dict(line.split("=", 1) for line in r.stdout.split())


@needs_ffmpeg
def test_v4l2_encoder_and_muxer_make_fmp4(tmp_path: Path) -> None:
    """No /dev/video here: the V4L2 command with its input swapped for ffmpeg's test source."""
    a = ffmpeg_cmd.build_command("v4l2:///dev/video0").argv
    i = a.index("-i")
    a[a.index("-f"):i + 2] = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", "3.05"]
    frags, data = _run_to_fragments(a)
    assert frags[0].kind == "init" and frags[0].timescale
    media = [f for f in frags if f.kind == "media"]
    assert len(media) >= 3 and all(f.keyframe for f in media)
    starts = [f.decode_time / f.timescale for f in media]
    assert starts[:3] == pytest.approx([0.0, 1.0, 2.0], abs=0.15)
    info = _ffprobe_h264(data, tmp_path)
    assert info["codec_name"] == "h264" and info["width"] == "320" and int(info["nb_read_packets"]) >= 30


# --- backoff ---------------------------------------------------------------------------------------------
def test_backoff_grows_caps_jitters_and_resets() -> None:
    now = [0.0]
    b = Backoff(base_s=1, cap_s=8, factor=2, jitter=0.0, stable_s=30, clock=lambda: now[0])
    assert [b.next_delay() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    b.healthy()
    now[0] += 10
    assert b.next_delay() == 8  # ran, but not for stable_s: no reset
    b.healthy()
    now[0] += 5
    b.healthy()  # only the first call of a run counts
    now[0] += 30
    assert b.next_delay() == 1
    lo = Backoff(base_s=10, cap_s=100, jitter=0.2, rand=lambda: 0.0)
    hi = Backoff(base_s=10, cap_s=10, jitter=0.2, rand=lambda: 0.999999)
    assert lo.next_delay() == pytest.approx(8.0) and hi.next_delay() <= 10


# --- feed mapping ----------------------------------------------------------------------------------------
def _frag(kind: str, dt: int | None = None, dur: int | None = 90000, key: bool = True, ts: int = 90000) -> Fragment:
    return Fragment(kind, b"x", 0, ts, dt if kind == "media" else None, dur if kind == "media" else None,
                    key if kind == "media" else False)  # type: ignore[arg-type]


def test_feed_seq_continues_across_reconnects_and_capture_times() -> None:
    m = FeedMapper("cam1", next_seq=7)
    t0 = 1_700_000_000_000_000
    m.restart(t0)
    init = m.map(_frag("init"), t0 + 50_000)
    assert (init.seq, init.kind, init.capture_us, init.keyframe) == (7, "init", t0, False)
    # first media fragment (1 s long) arrives 1.3 s after start: its first frame was captured ~0.3 s in
    a = m.map(_frag("media", 0), t0 + 1_300_000)
    b = m.map(_frag("media", 90000), t0 + 2_350_000)  # arrival jitter does not move it: camera clock spacing
    c = m.map(_frag("media", 180000, key=False), t0 + 3_300_000)
    assert [x.seq for x in (a, b, c)] == [8, 9, 10]
    assert a.capture_us == t0 + 300_000
    assert b.capture_us == t0 + 1_300_000 and c.capture_us == t0 + 2_300_000 and not c.keyframe
    # reconnect: new process, decode times restart, seq continues
    t1 = t0 + 20_000_000
    m.restart(t1)
    i2 = m.map(_frag("init"), t1)
    d = m.map(_frag("media", 5 * 90000), t1 + 1_200_000)  # RTSP decode times need not start at 0
    assert (i2.seq, d.seq) == (11, 12) and i2.capture_us == t1 and d.capture_us == t1 + 200_000
    # never before the process started
    m.restart(t1 + 10_000_000)
    m.map(_frag("init"), t1 + 10_000_000)
    e = m.map(_frag("media", 0, dur=5 * 90000), t1 + 10_500_000)
    assert e.capture_us == t1 + 10_000_000
    # a clock jump beyond max_drift re-anchors on arrival time
    f = m.map(_frag("media", 90000 * 1000), t1 + 12_000_000)
    assert m.reanchors == 1 and f.capture_us == t1 + 11_000_000
    assert VideoFragment.from_fields(f.to_fields()) == f


# --- integration: real ffmpeg, real bus ------------------------------------------------------------------
def _frags(r, camera: str) -> list[VideoFragment]:  # noqa: ANN001
    return [VideoFragment.from_fields(f) for _, f in r.xrange(names.plain_frag(camera))]


def _events(r, camera: str) -> list[FeedEvent]:  # noqa: ANN001
    return [FeedEvent.from_fields(f) for _, f in r.xrange(names.plain_event(camera))]


def _wait(pred, timeout: float, step: float = 0.1):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if v := pred():
            return v
        time.sleep(step)
    return pred()


@needs_ffmpeg
def test_synthetic_camera_to_bus_as_a_process(tmp_path: Path, plain_bus, plain_redis) -> None:  # noqa: ANN001
    cfg = tmp_path / "sealcam.yaml"
    cfg.write_text(f"""
data_dir: {tmp_path / 'data'}
cameras:
  - id: syn1
    inputs: [{{url: "synthetic://t?size=320x240&fps=10", roles: [record]}}]
recipients: [./owner.recipient]
storage: [{{type: local, path: ./remote}}]
hub: {{signing_key_file: ./hub.key}}
buses: {{plain_url: "{plain_bus.url}"}}
""")
    t_start = time.time_ns() // 1000
    proc = subprocess.Popen([sys.executable, "-m", "services.recorder", "--config", str(cfg), "--instance", "t1"],
                            cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        frags = _wait(lambda: (f := _frags(plain_redis, "syn1")) and len(f) >= 4 and f, 10)
        assert frags, "no fragments within 10 s"
        now = time.time_ns() // 1000
        assert frags[0].kind == "init" and [f.seq for f in frags] == list(range(len(frags)))
        media = frags[1:]
        assert all(f.kind == "media" and f.keyframe for f in media)
        gaps = [b.capture_us - a.capture_us for a, b in zip(media, media[1:], strict=False)]
        assert all(abs(g - 1_000_000) < 150_000 for g in gaps), gaps
        assert t_start <= media[0].capture_us <= now and now - media[-1].capture_us < 3_000_000
        assert plain_redis.get(names.heartbeat_key("recorder", "t1")) is not None
        assert 0 < plain_redis.ttl(names.heartbeat_key("recorder", "t1")) <= names.HEARTBEAT_TTL_S
        health = [Health.from_fields(f) for _, f in plain_redis.xrange(names.PLAIN_HEALTH)]
        assert health and health[0].service == "recorder" and health[0].camera == "syn1"
        assert _events(plain_redis, "syn1")[0].state == "back"
        kept = VideoFragment.from_fields(plain_redis.hgetall(names.plain_init(names.plain_frag("syn1"))))
        assert kept == frags[0]  # the init segment, kept beside the stream that will be trimmed
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=15)[0].decode()
    assert proc.returncode == 0, out
    assert "recorder[syn1]: starting ffmpeg" in out
    ev = _events(plain_redis, "syn1")
    assert [e.state for e in ev] == ["back", "lost"] and ev[-1].detail == "recorder stopped"
    assert not list((tmp_path / "data").glob("**/*.mp4"))


@pytest.fixture
def rtsp_cam():  # noqa: ANN201
    if why := rtsp_server.available():
        pytest.skip(why)
    with rtsp_server.rtsp_camera() as cam:
        yield cam


@needs_ffmpeg
def test_rtsp_copy_lost_and_back(tmp_path: Path, plain_redis, rtsp_cam) -> None:  # noqa: ANN001
    w = CameraWorker("door", rtsp_cam.url, plain_redis, stall_s=2.5, startup_s=8,
                     backoff=Backoff(base_s=0.2, cap_s=0.5, jitter=0.1))
    rec = Recorder(plain_redis, [w], instance="rtsp-test", health_interval_s=1)
    t = threading.Thread(target=rec.run, daemon=True)
    t.start()
    try:
        frags = _wait(lambda: (f := _frags(plain_redis, "door")) and len(f) >= 4 and f, 12)
        assert frags and frags[0].kind == "init"
        info = _ffprobe_h264(b"".join(f.data for f in frags), tmp_path)
        assert info["codec_name"] == "h264" and info["width"] == "320" and info["height"] == "240"
        assert any(f.keyframe for f in frags[1:])

        # the camera goes away: a lost event, then back when it returns, seq continuing
        rtsp_cam.stop()
        lost = _wait(lambda: [e for e in _events(plain_redis, "door") if e.state == "lost"], 8)
        assert lost and lost[0].detail
        before = _frags(plain_redis, "door")
        rtsp_cam.start()
        back = _wait(lambda: [e for e in _events(plain_redis, "door") if e.state == "back"][1:], 10)
        assert back, _events(plain_redis, "door")
        after = _wait(lambda: (f := _frags(plain_redis, "door")) and len(f) >= len(before) + 2 and f, 8)
        assert after
        assert [f.seq for f in after] == list(range(len(after)))
        assert after[len(before)].kind == "init" and after[len(before) + 1].kind == "media"
        assert after[len(before) + 1].capture_us > lost[0].at_us

        # a camera that hangs (no data, socket open) is killed after stall_s and reported lost
        n_lost = len([e for e in _events(plain_redis, "door") if e.state == "lost"])
        os.kill(rtsp_cam.proc.pid, signal.SIGSTOP)
        try:
            stalled = _wait(lambda: [e for e in _events(plain_redis, "door") if e.state == "lost"][n_lost:], 8)
            assert stalled and "stalled" in stalled[0].detail
        finally:
            os.kill(rtsp_cam.proc.pid, signal.SIGCONT)
        assert _wait(lambda: [e for e in _events(plain_redis, "door") if e.state == "back"][2:], 10)
        health = [Health.from_fields(f) for _, f in plain_redis.xrange(names.PLAIN_HEALTH)]
        assert health[-1].counters["restarts"] >= 2 and health[-1].counters["fragments"] > 0
    finally:
        rec.stop()
        t.join(10)
    assert not t.is_alive()
