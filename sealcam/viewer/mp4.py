"""The little ISO BMFF (MP4) the viewer needs: the codec string for MSE, track timescales, and moving a
fragment on the media timeline by rewriting its `tfdt` decode times in place (sizes and offsets unchanged).

The splitter that checks fragments as they are recorded is sealcam.media.fmp4; this module works on the
decrypted, signature-checked init segment and fragments of one recording.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"mvex", b"edts", b"dinf"}


class Mp4Error(ValueError):
    """Malformed MP4 box structure (in a decrypted payload: a writer bug, not tampering)."""


def boxes(data: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, btype = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > end:
                raise Mp4Error(f"box {btype!r} at {pos}: truncated large size")
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise Mp4Error(f"box {btype!r} at {pos}: size {size} does not fit")
        yield bytes(btype), pos + head, pos + size
        pos += size


def find(data: bytes | memoryview, path: list[bytes], start: int = 0,
         end: int | None = None) -> Iterator[tuple[int, int]]:
    """(payload start, end) of every box at `path` (e.g. [b"moov", b"trak"])."""
    for btype, p0, p1 in boxes(data, start, end):
        if btype == path[0]:
            if len(path) == 1:
                yield p0, p1
            elif btype in _CONTAINERS:
                yield from find(data, path[1:], p0, p1)


def timescales(init: bytes | memoryview) -> dict[int, int]:
    """track_ID -> media timescale, from the init segment's moov."""
    out = {}
    for t0, t1 in find(init, [b"moov", b"trak"]):
        tid = scale = None
        for p0, _ in find(init, [b"tkhd"], t0, t1):
            v = init[p0]
            tid = struct.unpack_from(">I", init, p0 + (20 if v == 1 else 12))[0]
        for p0, _ in find(init, [b"mdia", b"mdhd"], t0, t1):
            v = init[p0]
            scale = struct.unpack_from(">I", init, p0 + (20 if v == 1 else 12))[0]
        if tid is not None and scale:
            out[tid] = scale
    if not out:
        raise Mp4Error("init segment has no track with a timescale")
    return out


def codecs(init: bytes | memoryview) -> str:
    """The RFC 6381 codecs string MSE needs, e.g. `avc1.64001f` (H.264 profile, constraints, level)."""
    raw = bytes(init)
    out = []
    i = raw.find(b"avcC")
    if i != -1 and i + 8 <= len(raw):
        out.append(f"avc1.{raw[i + 5]:02x}{raw[i + 6]:02x}{raw[i + 7]:02x}")
    elif raw.find(b"hvcC") != -1:
        out.append("hvc1.1.6.L93.B0")  # H.265: the common Main profile string; browsers may not play it anyway
    if raw.find(b"mp4a") != -1:
        out.append("mp4a.40.2")
    if not out:
        raise Mp4Error("init segment has no H.264/H.265 track")
    return ",".join(out)


def decode_times(frag: bytes | memoryview) -> dict[int, int]:
    """track_ID -> tfdt baseMediaDecodeTime of each traf in a fragment (moof+mdat)."""
    out = {}
    for m0, m1 in find(frag, [b"moof"]):
        for t0, t1 in find(frag, [b"traf"], m0, m1):
            tid = _tfhd_track(frag, t0, t1)
            for p0, _ in find(frag, [b"tfdt"], t0, t1):
                out[tid] = struct.unpack_from(">Q" if frag[p0] == 1 else ">I", frag, p0 + 4)[0]
    return out


def _tfhd_track(frag: bytes | memoryview, t0: int, t1: int) -> int:
    for p0, _ in find(frag, [b"tfhd"], t0, t1):
        return struct.unpack_from(">I", frag, p0 + 4)[0]
    raise Mp4Error("traf without tfhd")


def shift(frag: bytes | memoryview, delta: dict[int, int]) -> bytearray:
    """A copy of the fragment with each track's tfdt moved by delta[track] (in that track's timescale)."""
    out = bytearray(frag)
    for m0, m1 in find(out, [b"moof"]):
        for t0, t1 in find(out, [b"traf"], m0, m1):
            d = delta.get(_tfhd_track(out, t0, t1), 0)
            for p0, _ in find(out, [b"tfdt"], t0, t1):
                wide = out[p0] == 1
                fmt = ">Q" if wide else ">I"
                value = struct.unpack_from(fmt, out, p0 + 4)[0] + d
                if not 0 <= value < (1 << (64 if wide else 32)):
                    raise Mp4Error(f"decode time {value} does not fit the tfdt box")
                struct.pack_into(fmt, out, p0 + 4, value)
    return out
