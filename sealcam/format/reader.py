"""Reading records from untrusted bytes: sequential scan with resynchronisation, and tail access.

Every read is bounded by the per-type limits in constants.MAX_BODY; nothing is allocated from a length
field before it has been checked. Damage is reported with the byte offset where it starts and where
the next valid record header was found.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .constants import MAGIC, MAGIC_PREFIX, MAX_BODY, RECORD_HEADER_LEN, RECORD_SYNC, RecordType
from .errors import FormatError, UnsupportedVersion
from .records import (
    TRAILER_RECORD_LEN,
    IndexEntry,
    RecordHeader,
    Trailer,
    decode_index_body,
    decode_record_header,
)

_SCAN_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class RawRecord:
    offset: int
    header: RecordHeader
    data: bytes | memoryview  # the whole record: 16-byte record header, then the body

    @property
    def body(self) -> memoryview:
        return memoryview(self.data)[RECORD_HEADER_LEN:]


@dataclass(frozen=True, slots=True)
class Damage:
    offset: int  # first byte that could not be parsed
    resumed_at: int | None  # offset of the next valid record header, None if none before EOF
    error: FormatError


def _read_body(f: BinaryIO, n: int) -> bytes:
    """Read up to `n` bytes without allocating `n` first when the stream holds fewer.

    `f.read(n)` reserves `n` bytes before reading, so a forged length field (up to the per-type limit,
    tens of MiB) would cost that much memory even in a tiny file. Large claims are checked against the
    bytes actually left; a short result tells the caller the record is truncated.
    """
    if n > _SCAN_BLOCK:
        here = f.tell()
        left = f.seek(0, 2) - here
        f.seek(here)
        if left < n:
            return f.read(max(left, 0))
    return f.read(n)


def read_magic(f: BinaryIO) -> None:
    head = f.read(len(MAGIC))
    if len(head) < len(MAGIC) or not head.startswith(MAGIC_PREFIX):
        raise FormatError("not a sealcam file (bad magic)", offset=0)
    if head != MAGIC:
        raise UnsupportedVersion(f"format version {head[-1]} is not supported (this reader: {MAGIC[-1]})")


def scan(f: BinaryIO, start: int = len(MAGIC)) -> Iterator[RawRecord | Damage]:
    """Yield every record from `start` to EOF; on damage yield a Damage and resynchronise."""
    pos = start
    f.seek(pos)
    while True:
        head = f.read(RECORD_HEADER_LEN)
        if not head:
            return
        try:
            rh = decode_record_header(head, pos)
        except FormatError as exc:
            nxt = _resync(f, pos + 1)
            yield Damage(pos, nxt, exc)
            if nxt is None:
                return
            pos = nxt
            f.seek(pos)
            continue
        body = _read_body(f, rh.length)
        if len(body) < rh.length:
            yield Damage(pos, None, FormatError(
                f"{rh.type.name} record ends {rh.length - len(body)} bytes early (file truncated)",
                offset=pos, kind="truncated"))
            return
        yield RawRecord(pos, rh, head + body)
        pos += RECORD_HEADER_LEN + rh.length


def _resync(f: BinaryIO, pos: int) -> int | None:
    """Offset of the next position >= pos holding a valid record header, or None."""
    while True:
        f.seek(pos)
        block = f.read(_SCAN_BLOCK + RECORD_HEADER_LEN)
        if len(block) < RECORD_HEADER_LEN:
            return None
        i = block.find(RECORD_SYNC)
        while i != -1 and i + RECORD_HEADER_LEN <= len(block):
            try:
                decode_record_header(block[i : i + RECORD_HEADER_LEN], pos + i)
                return pos + i
            except FormatError:
                i = block.find(RECORD_SYNC, i + 1)
        if len(block) < _SCAN_BLOCK + RECORD_HEADER_LEN:
            return None
        pos += _SCAN_BLOCK


def read_record_at(
    f: BinaryIO, offset: int, expect: RecordType, length: int | None = None, into: bytearray | None = None
) -> RawRecord:
    """Random access to one record (seeking). Checks type and, if given, the total length.

    With a known `length` and a large enough `into` buffer the record is read into that (reused) buffer:
    no allocation per record; the returned record's data is then valid only until `into` is reused."""
    try:  # offsets come from (signed, but not necessarily sane) index entries: up to 2**64 - 1
        f.seek(offset)
    except (OSError, ValueError, OverflowError):
        raise FormatError(f"{expect.name} record offset {offset} is outside any file", offset=None) from None
    if length is not None:  # known length (from the signed index): one read, no header + body join
        if not RECORD_HEADER_LEN <= length <= RECORD_HEADER_LEN + MAX_BODY[expect]:
            raise FormatError(f"{expect.name} record length {length} is out of bounds", offset=offset)
        if into is not None and len(into) >= length:
            data = memoryview(into)[:length]
            data = data[: f.readinto(data) or 0]
        else:
            data = _read_body(f, length)
        rh = decode_record_header(bytes(data[:RECORD_HEADER_LEN]), offset)
        if rh.type is not expect:
            raise FormatError(f"expected a {expect.name} record, found {rh.type.name}", offset=offset)
        if rh.total != length:
            raise FormatError(f"{expect.name} record is {rh.total} bytes, the index says {length}", offset=offset)
        if len(data) < length:
            raise FormatError(f"{expect.name} record truncated", offset=offset, kind="truncated")
        return RawRecord(offset, rh, data)
    head = f.read(RECORD_HEADER_LEN)
    rh = decode_record_header(head, offset)
    if rh.type is not expect:
        raise FormatError(f"expected a {expect.name} record, found {rh.type.name}", offset=offset)
    body = _read_body(f, rh.length)
    if len(body) < rh.length:
        raise FormatError(f"{expect.name} record truncated", offset=offset, kind="truncated")
    return RawRecord(offset, rh, head + body)


def read_tail(f: BinaryIO, size: int) -> tuple[Trailer, RawRecord, list[IndexEntry]] | None:
    """TRAILER and INDEX of a closed segment, read from the end; None when the file has no trailer."""
    at = size - TRAILER_RECORD_LEN
    if at < len(MAGIC):
        return None
    try:
        raw = read_record_at(f, at, RecordType.TRAILER)
    except FormatError:
        return None
    trailer = Trailer.decode(bytes(raw.body), at)
    if not len(MAGIC) <= trailer.index_offset < at:
        raise FormatError("TRAILER points to an INDEX outside the file", offset=at)
    idx = read_record_at(f, trailer.index_offset, RecordType.INDEX)
    if idx.offset + idx.header.total != at:
        raise FormatError("INDEX does not end where the TRAILER starts", offset=idx.offset)
    return trailer, idx, decode_index_body(bytes(idx.body), idx.offset)
