"""Streaming, bounded splitter for fragmented MP4 (fMP4 / CMAF), as written by ffmpeg with
``-movflags frag_keyframe+empty_moov[+default_base_moof]``.

``iter_fragments`` reads top-level boxes one at a time and yields the init segment (``ftyp`` + ``moov``)
and then one media fragment per ``moof`` + ``mdat`` pair, each as the exact input bytes. It reads only
what it needs and never buffers more than ``max_box_bytes`` for one box, so a hostile or corrupt size
field cannot make it allocate without limit. Any malformed input raises :class:`Fmp4Error`.

``free``/``skip``/``sidx``/``styp``/``prft``/``emsg`` boxes are attached to the fragment that follows
them. Such boxes left at the end of the stream, notably the ``mfra`` random-access trailer that ffmpeg
writes unless told ``-movflags +skip_trailer``, are checked and dropped: they describe byte offsets in
the original file and no media.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

__all__ = ["DEFAULT_MAX_BOX_BYTES", "Fmp4Error", "Fragment", "fragment_time_seconds", "iter_fragments"]

DEFAULT_MAX_BOX_BYTES = 64 * 1024 * 1024
_NON_SYNC = 0x00010000  # sample_is_non_sync_sample bit of the ISO BMFF sample flags
_CARRIED = frozenset({b"free", b"skip", b"sidx", b"styp", b"prft", b"emsg", b"mfra"})
_CHUNK = 1024 * 1024


class Fmp4Error(ValueError):
    """Malformed, truncated or oversized fMP4 input. ``offset`` is the byte offset in the stream."""

    def __init__(self, offset: int, box: str, detail: str) -> None:
        super().__init__(f"{box} box at offset {offset}: {detail}")
        self.offset = offset
        self.box = box


@dataclass(frozen=True, slots=True)
class Fragment:
    kind: Literal["init", "media"]
    data: bytes  # exact bytes: ftyp+moov (init) or [styp/sidx/prft...]+moof+mdat (media)
    offset: int  # byte offset of data[0] in the input stream
    timescale: int | None  # the video track's mdhd timescale (None only if there is no video track)
    decode_time: int | None  # tfdt baseMediaDecodeTime of the video traf (media only)
    duration: int | None  # sum of the video track's sample durations in this fragment, if derivable
    keyframe: bool  # the video track's first sample in this fragment is a sync sample (init: False)


def fragment_time_seconds(frag: Fragment) -> float | None:
    """The fragment's decode time in seconds, or None when it is unknown."""
    if frag.decode_time is None or not frag.timescale:
        return None
    return frag.decode_time / frag.timescale


@dataclass(frozen=True, slots=True)
class _Video:
    track_id: int
    timescale: int
    default_duration: int | None  # from trex
    default_flags: int | None  # from trex


def _name(btype: bytes) -> str:
    return repr(btype.decode("latin-1"))


class _Box:
    """A parsed box held in memory: bounds-checked big-endian field access with absolute offsets."""

    __slots__ = ("base", "data", "name")

    def __init__(self, data: bytes, base: int, name: str) -> None:
        self.data, self.base, self.name = data, base, name

    def error(self, pos: int, detail: str) -> Fmp4Error:
        return Fmp4Error(self.base + pos, self.name, detail)

    def uint(self, pos: int, n: int, end: int) -> int:
        if pos + n > end:
            raise self.error(pos, f"{n}-byte field runs past the end of its box")
        return int.from_bytes(self.data[pos : pos + n], "big")

    def children(self, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
        """Yield (type, payload start, end) for each child box in data[start:end]."""
        pos = start
        while pos < end:
            if end - pos < 8:
                raise self.error(pos, f"{end - pos} stray bytes where a child box header was expected")
            size, btype = struct.unpack_from(">I4s", self.data, pos)
            hdr = 8
            if size == 1:
                size, hdr = self.uint(pos + 8, 8, end), 16
            if size < hdr or size > end - pos:
                raise Fmp4Error(
                    self.base + pos, _name(btype), f"size {size} does not fit its parent {self.name}"
                )
            yield btype, pos + hdr, pos + size
            pos += size

    def find(self, start: int, end: int, btype: bytes) -> tuple[int, int] | None:
        for t, s, e in self.children(start, end):
            if t == btype:
                return s, e
        return None


def _parse_moov(box: _Box, start: int) -> _Video | None:
    video: tuple[int, int] | None = None  # (track_id, timescale) of the first 'vide' track
    trex: dict[int, tuple[int, int]] = {}
    for btype, s, e in box.children(start, len(box.data)):
        if btype == b"trak" and video is None:
            video = _parse_trak(box, s, e)
        elif btype == b"mvex":
            for t2, s2, e2 in box.children(s, e):
                if t2 == b"trex":
                    trex.setdefault(
                        box.uint(s2 + 4, 4, e2), (box.uint(s2 + 12, 4, e2), box.uint(s2 + 20, 4, e2))
                    )
    if video is None:
        return None
    track_id, timescale = video
    defaults = trex.get(track_id)
    return _Video(track_id, timescale, *(defaults if defaults else (None, None)))


def _parse_trak(box: _Box, start: int, end: int) -> tuple[int, int] | None:
    mdia = box.find(start, end, b"mdia")
    if mdia is None:
        return None
    hdlr = box.find(*mdia, b"hdlr")
    if hdlr is None or hdlr[0] + 12 > hdlr[1] or box.data[hdlr[0] + 8 : hdlr[0] + 12] != b"vide":
        return None
    tkhd, mdhd = box.find(start, end, b"tkhd"), box.find(*mdia, b"mdhd")
    if tkhd is None or mdhd is None:
        raise box.error(start, "video trak lacks a tkhd or mdhd box")
    skip = 16 if box.uint(tkhd[0], 1, tkhd[1]) == 1 else 8
    track_id = box.uint(tkhd[0] + 4 + skip, 4, tkhd[1])
    skip = 16 if box.uint(mdhd[0], 1, mdhd[1]) == 1 else 8
    timescale = box.uint(mdhd[0] + 4 + skip, 4, mdhd[1])
    if timescale == 0:
        raise box.error(mdhd[0], "video mdhd timescale is 0")
    return track_id, timescale


def _parse_moof(box: _Box, start: int, video: _Video | None) -> tuple[int | None, int | None, bool]:
    """(decode_time, duration, keyframe) of the video track in this moof."""
    if video is None:
        return None, None, False
    for btype, s, e in box.children(start, len(box.data)):
        if btype != b"traf":
            continue
        tfhd = box.find(s, e, b"tfhd")
        if tfhd is None:
            raise box.error(s, "traf without tfhd")
        if box.uint(tfhd[0] + 4, 4, tfhd[1]) == video.track_id:
            return _parse_traf(box, s, e, tfhd, video)
    return None, None, False


def _parse_traf(
    box: _Box, start: int, end: int, tfhd: tuple[int, int], video: _Video
) -> tuple[int | None, int | None, bool]:
    flags, p = box.uint(tfhd[0] + 1, 3, tfhd[1]), tfhd[0] + 8
    p += 8 if flags & 0x01 else 0  # base_data_offset
    p += 4 if flags & 0x02 else 0  # sample_description_index
    default_duration, default_flags = video.default_duration, video.default_flags
    if flags & 0x08:
        default_duration = box.uint(p, 4, tfhd[1])
        p += 4
    p += 4 if flags & 0x10 else 0  # default_sample_size
    if flags & 0x20:
        default_flags = box.uint(p, 4, tfhd[1])

    decode_time: int | None = None
    duration: int | None = 0
    first_flags: int | None = None
    seen_sample = False
    for btype, s, e in box.children(start, end):
        if btype == b"tfdt" and decode_time is None:
            decode_time = box.uint(s + 4, 8 if box.uint(s, 1, e) == 1 else 4, e)
        elif btype == b"trun":
            tr_flags, count, p = box.uint(s + 1, 3, e), box.uint(s + 4, 4, e), s + 8
            p += 4 if tr_flags & 0x01 else 0  # data_offset
            trun_first: int | None = None
            if tr_flags & 0x04:
                trun_first = box.uint(p, 4, e)
                p += 4
            fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if tr_flags & bit]
            entry = 4 * len(fields)
            if count * entry > e - p:
                raise box.error(s, f"trun claims {count} samples of {entry} bytes, more than the box holds")
            if count == 0:
                continue
            if not seen_sample:
                seen_sample = True
                if trun_first is not None:
                    first_flags = trun_first
                elif tr_flags & 0x400:
                    first_flags = box.uint(p + 4 * fields.index(0x400), 4, e)
                else:
                    first_flags = default_flags
            if duration is None:
                continue
            if tr_flags & 0x100:
                duration += sum(box.uint(p + i * entry, 4, e) for i in range(count))
            elif default_duration is not None:
                duration += count * default_duration
            else:
                duration = None
    keyframe = seen_sample and first_flags is not None and not first_flags & _NON_SYNC
    return decode_time, duration, keyframe


def _read_exact(stream: BinaryIO, n: int, offset: int, name: str, what: str = "box") -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = stream.read(min(n - got, _CHUNK))
        if not chunk:
            raise Fmp4Error(offset, name, f"truncated {what}: stream ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_box(stream: BinaryIO, pos: int, limit: int) -> tuple[bytes, bytes, int] | None:
    """Next top-level box as (type, exact bytes, header length), or None at a clean end of stream."""
    first = stream.read(8)
    if not first:
        return None
    head = (
        first + _read_exact(stream, 8 - len(first), pos, "stream", "box header") if len(first) < 8 else first
    )
    size, btype = struct.unpack(">I4s", head)
    name, hdr = _name(btype), 8
    if size == 1:
        head += _read_exact(stream, 8, pos, name, "64-bit box size")
        size, hdr = struct.unpack(">Q", head[8:])[0], 16
    elif size == 0:
        if btype != b"mdat":
            raise Fmp4Error(pos, name, "size 0 ('to end of file') is only allowed for a final mdat")
        chunks, got = [head], 8
        while chunk := stream.read(min(_CHUNK, limit + 1 - got)):
            chunks.append(chunk)
            got += len(chunk)
            if got > limit:
                raise Fmp4Error(pos, name, f"box running to end of file exceeds the limit of {limit} bytes")
        return btype, b"".join(chunks), hdr
    if size < hdr:
        raise Fmp4Error(pos, name, f"size {size} is smaller than its {hdr}-byte header")
    if size > limit:
        raise Fmp4Error(pos, name, f"size {size} exceeds the limit of {limit} bytes")
    return btype, head + _read_exact(stream, size - hdr, pos, name), hdr


def iter_fragments(stream: BinaryIO, *, max_box_bytes: int = DEFAULT_MAX_BOX_BYTES) -> Iterator[Fragment]:
    """Split an fMP4 byte stream into its init segment and media fragments, as they arrive."""
    if max_box_bytes < 16:
        raise ValueError("max_box_bytes must be at least 16")
    pos = 0
    pending: list[bytes] = []
    pending_at = 0
    init_open = False  # an ftyp was seen and its moov has not arrived yet
    have_moov = False
    video: _Video | None = None
    while (box := _read_box(stream, pos, max_box_bytes)) is not None:
        btype, data, hdr = box
        start, name = pos, _name(btype)
        pos += len(data)
        if not pending:
            pending_at = start
        if btype in _CARRIED or btype == b"ftyp":
            if btype == b"ftyp":
                init_open, have_moov, video = True, False, None
            pending.append(data)
        elif btype == b"moov":
            video = _parse_moov(_Box(data, start, name), hdr)
            init_open = False
            have_moov = True
            timescale = video.timescale if video else None
            yield Fragment("init", b"".join([*pending, data]), pending_at, timescale, None, None, False)
            pending = []
        elif btype == b"moof":
            if not have_moov:
                raise Fmp4Error(start, name, "movie fragment before any moov (no init segment)")
            decode_time, duration, keyframe = _parse_moof(_Box(data, start, name), hdr, video)
            nxt = _read_box(stream, pos, max_box_bytes)
            if nxt is None:
                raise Fmp4Error(pos, "'mdat'", f"stream ended after the moof at offset {start}")
            if nxt[0] != b"mdat":
                raise Fmp4Error(pos, _name(nxt[0]), f"expected the mdat of the moof at offset {start}")
            pos += len(nxt[1])
            timescale = video.timescale if video else None
            frag = b"".join([*pending, data, nxt[1]])
            yield Fragment("media", frag, pending_at, timescale, decode_time, duration, keyframe)
            pending = []
        elif btype == b"mdat":
            raise Fmp4Error(start, name, "media data without a preceding moof")
        else:
            raise Fmp4Error(start, name, "unexpected top-level box")
    if init_open:
        raise Fmp4Error(pos, "'moov'", "stream ended before the moov of the init segment")
