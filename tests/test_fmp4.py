"""sealcam.media.fmp4 against real ffmpeg output (files and pipes), malformed input and fuzzing."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealcam.media.fmp4 import Fmp4Error, Fragment, fragment_time_seconds, iter_fragments

SECONDS = 6
FLAGS_DEFAULT_BASE = "frag_keyframe+empty_moov+default_base_moof"
FLAGS_PLAIN = "+frag_keyframe+empty_moov"
FLAGS_NO_TRAILER = "frag_keyframe+empty_moov+default_base_moof+skip_trailer"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: run `bash scripts/setup.sh --test` (it installs ffmpeg)")
    return path


def _encode_cmd(
    movflags: str, out: str, *, size: str = "320x240", rate: int = 10, seconds: int = SECONDS, gop: int = 10
) -> list[str]:
    return [
        _tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-sc_threshold", "0",
        "-pix_fmt", "yuv420p",
        "-movflags", movflags, "-f", "mp4", out,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("fmp4")
    out: dict[str, bytes] = {}
    for flags in (FLAGS_DEFAULT_BASE, FLAGS_PLAIN, FLAGS_NO_TRAILER):
        path = tmp / f"{len(out)}.mp4"
        subprocess.run(_encode_cmd(flags, str(path)), check=True, timeout=120)
        out[flags] = path.read_bytes()
    return out


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fmp4-small") / "small.mp4"
    cmd = _encode_cmd(FLAGS_DEFAULT_BASE, str(path), size="64x48", rate=5, seconds=2, gop=5)
    subprocess.run(cmd, check=True, timeout=60)
    return path.read_bytes()


def _top_level(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of each top-level box, by a naive walk of a well-formed file."""
    boxes, pos = [], 0
    while pos < len(data):
        size, btype = struct.unpack_from(">I4s", data, pos)
        boxes.append((btype, pos, size))
        pos += size
    return boxes


def _check_split(frags: list[Fragment], raw: bytes, *, trailer_expected: bool) -> None:
    assert [f.kind for f in frags] == ["init"] + ["media"] * SECONDS
    joined = b"".join(f.data for f in frags)
    offset = 0
    for f in frags:
        assert f.offset == offset
        offset += len(f.data)
    assert raw.startswith(joined)
    rest = _top_level(raw[len(joined) :])
    if trailer_expected:  # ffmpeg's mfra trailer is checked and dropped
        assert [b for b, _, _ in rest] == [b"mfra"]
    else:
        assert joined == raw

    init, media = frags[0], frags[1:]
    assert init.data[4:8] == b"ftyp" and b"moov" in init.data
    assert init.timescale and init.decode_time is None and init.duration is None and not init.keyframe
    for f in media:
        assert f.keyframe, f
        assert f.timescale == init.timescale
        assert f.data[4:8] == b"moof"
        assert f.duration is not None and abs(f.duration / f.timescale - 1.0) < 0.05
    times = [fragment_time_seconds(f) for f in media]
    assert times[0] == pytest.approx(0.0, abs=0.05)
    for a, b in zip(times, times[1:], strict=False):
        assert a is not None and b is not None
        assert b - a == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("flags", [FLAGS_DEFAULT_BASE, FLAGS_PLAIN])
def test_split_file_with_trailer(videos: dict[str, bytes], flags: str) -> None:
    raw = videos[flags]
    _check_split(list(iter_fragments(io.BytesIO(raw))), raw, trailer_expected=True)


def test_split_reproduces_file_byte_for_byte(videos: dict[str, bytes]) -> None:
    raw = videos[FLAGS_NO_TRAILER]
    _check_split(list(iter_fragments(io.BytesIO(raw))), raw, trailer_expected=False)


def test_suffix_of_fragments_plays(videos: dict[str, bytes], tmp_path: Path) -> None:
    frags = list(iter_fragments(io.BytesIO(videos[FLAGS_DEFAULT_BASE])))
    n = len(frags) - 1
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(frags[0].data + b"".join(f.data for f in frags[4:]))  # init + media fragments 3..end
    # ffprobe's format "duration" of a clip starting at t=3 s counts from 0 in some versions; measure the
    # span of the packets' presentation times instead (10 fps: span of k seconds = 10 * k frames).
    probe = subprocess.run(
        [_tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
         "-of", "csv=p=0", str(clip)],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.stderr == ""
    pts = sorted(float(line) for line in probe.stdout.split())
    assert len(pts) == (n - 3) * 10
    assert pts[0] == pytest.approx(3.0, abs=0.05)
    assert pts[-1] + 0.1 - pts[0] == pytest.approx(n - 3, abs=0.05)
    decode = subprocess.run(
        [_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(clip), "-f", "null", "-"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert decode.stderr == ""


class _Dribble(io.RawIOBase):
    """A pipe that returns at most `chunk` bytes per read, recording everything it hands out."""

    def __init__(self, inner: io.BufferedIOBase | io.RawIOBase, chunk: int) -> None:
        self.inner, self.chunk, self.seen = inner, chunk, bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(min(len(buf), self.chunk))
        if not data:
            return 0
        buf[: len(data)] = data
        self.seen += data
        return len(data)


@pytest.mark.parametrize("flags", [FLAGS_DEFAULT_BASE, FLAGS_PLAIN])
@pytest.mark.parametrize("dribble", [False, True], ids=["buffered", "short-reads"])
def test_split_from_ffmpeg_pipe(flags: str, dribble: bool) -> None:
    proc = subprocess.Popen(_encode_cmd(flags, "pipe:1"), stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        stream = _Dribble(proc.stdout, 997) if dribble else proc.stdout
        frags = list(iter_fragments(stream))  # type: ignore[arg-type]
    finally:
        if proc.stdout:
            proc.stdout.close()
        assert proc.wait(timeout=120) == 0
    assert [f.kind for f in frags] == ["init"] + ["media"] * SECONDS
    assert all(f.keyframe for f in frags[1:])
    times = [fragment_time_seconds(f) for f in frags[1:]]
    assert times == pytest.approx([float(i) for i in range(SECONDS)], abs=0.05)
    if isinstance(stream, _Dribble):
        joined = b"".join(f.data for f in frags)
        assert bytes(stream.seen).startswith(joined)
        assert [b for b, _, _ in _top_level(bytes(stream.seen)[len(joined) :])] == [b"mfra"]


def test_truncated_mid_mdat(videos: dict[str, bytes]) -> None:
    raw = videos[FLAGS_NO_TRAILER]
    frags = list(iter_fragments(io.BytesIO(raw)))
    third = frags[3]
    moof_size = struct.unpack_from(">I", third.data)[0]
    mdat_at = third.offset + moof_size
    got: list[Fragment] = []
    with pytest.raises(Fmp4Error, match="truncated") as err:
        for f in iter_fragments(io.BytesIO(raw[: mdat_at + 100])):
            got.append(f)
    assert err.value.offset == mdat_at
    assert f"offset {mdat_at}" in str(err.value) and "'mdat'" in str(err.value)
    assert got == frags[:3]


@pytest.mark.parametrize(
    ("data", "offset", "words"),
    [
        (b"\x00\x00\x00\x03ftyp", 0, "smaller than"),
        (b"\x00\x00\x00\x08free\x00\x00\x00\x03moov", 8, "'moov'"),
        (b"\x00\x00\x00\x00moov", 0, "only allowed for a final mdat"),
        (b"\x00\x00\x00\x10ftyp\x00\x00", 0, "truncated"),
        (b"\x00\x00\x00", 0, "box header"),
        (b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00", 16, "before the moov"),
        (b"\x00\x00\x00\x08mdat", 0, "without a preceding moof"),
        (b"\x00\x00\x00\x08moof", 0, "before any moov"),
        (b"\x00\x00\x00\x08junk", 0, "unexpected top-level box"),
    ],
)
def test_malformed_top_level(data: bytes, offset: int, words: str) -> None:
    with pytest.raises(Fmp4Error, match=words) as err:
        list(iter_fragments(io.BytesIO(data)))
    assert err.value.offset == offset
    assert f"offset {offset}" in str(err.value)


class _Guarded(io.BytesIO):
    """Fails the test if anything asks for more than `limit` bytes at once."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data)
        self.limit = limit

    def read(self, n: int | None = -1) -> bytes:
        assert n is not None and 0 <= n <= self.limit, f"read({n}) exceeds the box limit"
        return super().read(n)


@pytest.mark.parametrize(
    "header",
    [
        b"\xff\xff\xff\xf0mdat",  # 4 GiB
        b"\x00\x00\x00\x01mdat" + struct.pack(">Q", 1 << 62),  # 64-bit largesize
        b"\x00\x00\x04\x01ftyp",  # one byte over the limit
    ],
)
def test_huge_size_rejected_without_allocating(header: bytes) -> None:
    with pytest.raises(Fmp4Error, match="exceeds the limit of 1024 bytes") as err:
        list(iter_fragments(_Guarded(header, 1024), max_box_bytes=1024))
    assert err.value.offset == 0


def test_real_mdat_over_limit(videos: dict[str, bytes]) -> None:
    raw = videos[FLAGS_DEFAULT_BASE]
    mdat_at = next(off for btype, off, _ in _top_level(raw) if btype == b"mdat")
    it = iter_fragments(_Guarded(raw, 4096), max_box_bytes=4096)
    assert next(it).kind == "init"
    with pytest.raises(Fmp4Error, match="'mdat'") as err:
        next(it)
    assert err.value.offset == mdat_at


def test_size_zero_final_mdat(videos: dict[str, bytes]) -> None:
    raw = videos[FLAGS_NO_TRAILER]
    frags = list(iter_fragments(io.BytesIO(raw)))
    last = frags[-1]
    rel = struct.unpack_from(">I", last.data)[0]  # the moof's size: its mdat follows
    mdat_at = last.offset + rel
    patched = raw[:mdat_at] + b"\x00\x00\x00\x00" + raw[mdat_at + 4 :]
    again = list(iter_fragments(io.BytesIO(patched)))
    assert len(again) == len(frags)
    assert again[-1].data[rel : rel + 8] == b"\x00\x00\x00\x00mdat"
    assert b"".join(f.data for f in again) == patched


@st.composite
def _mutated(draw: st.DrawFn, sample: bytes, hot: list[int]) -> bytes:
    data = bytearray(sample)
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.one_of(st.sampled_from(hot), st.integers(0, len(data) - 1)))
        data[pos] = draw(st.one_of(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]), st.integers(0, 255)))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutations_raise_only_fmp4error(small_sample: bytes, data: st.DataObject) -> None:
    frags = list(iter_fragments(io.BytesIO(small_sample)))
    hot = list(range(len(frags[0].data)))  # ftyp + moov
    for f in frags[1:]:
        hot.extend(range(f.offset, f.offset + struct.unpack_from(">I", f.data)[0]))  # each moof
    mutated = data.draw(_mutated(small_sample, hot))
    try:
        result = list(iter_fragments(io.BytesIO(mutated), max_box_bytes=1 << 20))
    except Fmp4Error as exc:
        assert 0 <= exc.offset <= len(mutated)
        return
    offset = 0
    for f in result:
        assert f.offset == offset and mutated[offset : offset + len(f.data)] == f.data
        offset += len(f.data)
