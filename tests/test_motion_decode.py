"""Decoding fMP4 fragments with a real ffmpeg subprocess: frames, sizes, capture times, gaps, restarts."""

from __future__ import annotations

import io
import shutil
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("cv2")
from sealcam.bus.contract import VideoFragment  # noqa: E402
from sealcam.media.fmp4 import iter_fragments  # noqa: E402
from sealcam.motion.decode import (  # noqa: E402
    DecodeError,
    FragmentClock,
    FragmentDecoder,
    decode_file,
    frame_size,
    video_size,
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
US = 1_000_000
BASE = 1_750_000_000 * US


def fmp4(seconds: int = 4, size: str = "320x240", fps: int = 10) -> list:
    """Frames whose brightness encodes their time: frame i of second s has mean about 40 + 40*s."""
    w, h = (int(x) for x in size.split("x"))
    raw = b"".join(np.full((h, w, 3), 40 + 40 * (i // fps), np.uint8).tobytes() for i in range(seconds * fps))
    out = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
                          "-s", size, "-r", str(fps), "-i", "pipe:0", "-c:v", "libx264", "-preset", "ultrafast",
                          "-pix_fmt", "yuv420p", "-g", str(fps), "-f", "mp4", "-movflags",
                          "+frag_keyframe+empty_moov+default_base_moof", "pipe:1"],
                         input=raw, capture_output=True, check=True).stdout
    return list(iter_fragments(io.BytesIO(out)))


def messages(frags: list, cam: str = "cam1", seq0: int = 0) -> list[VideoFragment]:
    out = []
    for i, f in enumerate(frags):
        cap = BASE + max(0, i - 1) * US  # media fragment k (1-based) starts at second k-1
        out.append(VideoFragment(cam, seq0 + i, cap, f.keyframe, f.kind, f.data))
    return out


def drain(dec: FragmentDecoder, want: int, timeout: float = 10.0) -> list:
    """Frames as they come (the last one waits for the end of input), then the rest after EOF."""
    got, end = [], time.monotonic() + timeout
    while len(got) < want - 1 and time.monotonic() < end:
        got += dec.frames()
        time.sleep(0.02)
    return got + dec.flush()


def test_video_size_and_frame_size() -> None:
    init = fmp4(1, "320x240")[0]
    assert init.kind == "init" and video_size(init.data) == (320, 240)
    assert video_size(b"\x00\x00\x00\x08free") is None
    assert frame_size((320, 240), 160, None) == (160, 120)
    assert frame_size(None, 641, None) == (640, 360)
    assert frame_size((1920, 1080), 640, 480) == (640, 480)


def test_frames_and_capture_times() -> None:
    dec = FragmentDecoder("cam1", 5, 160, None)
    try:
        for m in messages(fmp4(4)):
            dec.feed(m)
        frames = drain(dec, 20)
    finally:
        dec.close()
    assert len(frames) == 20 and frames[0].image.shape == (120, 160, 3)
    assert [f.capture_us - BASE for f in frames] == [i * US // 5 for i in range(20)]
    for f in frames:  # the content matches the time it is stamped with
        second = (f.capture_us - BASE) // US
        assert abs(float(f.image.mean()) - (40 + 40 * second)) < 6
    assert dec.counters["fragments"] == 4 and dec.counters["restarts"] == 1


def test_gap_restarts_and_keeps_times_right() -> None:
    msgs = messages(fmp4(5))
    dec = FragmentDecoder("cam1", 5, 160, None)
    try:
        for m in msgs[:3] + msgs[4:]:  # media fragment 3 (second 2) never arrives
            dec.feed(m)
        frames = drain(dec, 20)
    finally:
        dec.close()
    seconds = sorted({(f.capture_us - BASE) // US for f in frames})
    assert seconds == [0, 1, 3, 4] and len(frames) == 20
    for f in frames:
        assert abs(float(f.image.mean()) - (40 + 40 * ((f.capture_us - BASE) // US))) < 6
    assert dec.counters["gaps"] == 1 and dec.counters["restarts"] == 2


def test_media_before_init_and_non_key_start_are_skipped() -> None:
    msgs = messages(fmp4(2))
    dec = FragmentDecoder("cam1", 5, 160, None)
    try:
        dec.feed(msgs[1])
        assert dec.counters["skipped_no_init"] == 1
        for m in msgs:
            dec.feed(m)
        assert len(drain(dec, 10)) == 10
    finally:
        dec.close()


def test_new_init_restarts_the_decoder() -> None:
    a, b = messages(fmp4(2)), messages(fmp4(2, "160x120"), seq0=3)
    dec = FragmentDecoder("cam1", 5, 160, None)
    try:
        for m in a:
            dec.feed(m)
        first = drain(dec, 10)
        for m in b:
            dec.feed(m)
        second = drain(dec, 10)
    finally:
        dec.close()
    assert len(first) == 10 and len(second) == 10 and dec.counters["restarts"] == 2


def test_garbage_does_not_hang() -> None:
    msgs = messages(fmp4(2))
    dec = FragmentDecoder("cam1", 5, 160, None)
    try:
        dec.feed(msgs[0])
        bad = VideoFragment("cam1", 1, BASE, True, "media", b"\x00\x00\x00\x10moof" + b"\xff" * 8)
        dec.feed(bad)
        assert dec.counters["bad_fragments"] == 1
        assert dec.flush() == []
    finally:
        dec.close()


def test_fragment_clock() -> None:
    c = FragmentClock()
    assert c.capture_us(0, 5) is None
    c.add(100.0, 1.0, BASE)
    c.add(101.0, 1.0, BASE + 1_100_000)  # the camera's clock and the wall clock disagree a little
    assert c.capture_us(0, 5) == (BASE, 100.0)
    assert c.capture_us(4, 5)[0] == BASE + 800_000
    assert c.capture_us(6, 5)[0] == BASE + 1_100_000 + 200_000


def test_decode_file(tmp_path) -> None:  # noqa: ANN001
    p = tmp_path / "clip.mp4"
    p.write_bytes(b"".join(f.data for f in fmp4(2)))
    frames = list(decode_file(p, 5, 160, None))
    assert len(frames) == 10 and frames[3].capture_us == 600_000 and frames[0].image.shape == (120, 160, 3)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(DecodeError, match="bad.mp4"):
        list(decode_file(bad, 5, 160, None))
    with pytest.raises(DecodeError, match="no such file"):
        list(decode_file(tmp_path / "missing.mp4", 5, 160, None))
