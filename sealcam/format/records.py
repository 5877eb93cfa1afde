"""Record framing and the fixed layouts of every record body (container v1).

Pure byte <-> dataclass conversion, bounded: every decode checks lengths before it slices, and raises
only FormatError (with the file offset of the offending record). No crypto happens here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .constants import (
    ALLOWED_FLAGS,
    FORMAT_VERSION,
    HANDLE_LEN,
    HASH_LEN,
    KEY_ID_LEN,
    MAX_BODY,
    MAX_GAP_BODY,
    MAX_INDEX_ENTRIES,
    MAX_STANZA_BODY,
    MAX_STANZAS,
    PUBKEY_LEN,
    RECORD_HEADER_LEN,
    RECORD_SYNC,
    SEGMENT_ID_LEN,
    SIG_LEN,
    TAG_LEN,
    GapReason,
    RecordType,
    StanzaType,
    Suite,
)
from .errors import FormatError, UnsupportedVersion

_RH = struct.Struct(">4sBBHI")  # sync, type, flags, reserved, body length (then crc32)


@dataclass(frozen=True, slots=True)
class RecordHeader:
    type: RecordType
    flags: int
    length: int  # body length

    @property
    def total(self) -> int:
        return RECORD_HEADER_LEN + self.length


def encode_record_header(rtype: RecordType, flags: int, body_len: int) -> bytes:
    head = _RH.pack(RECORD_SYNC, rtype, flags, 0, body_len)
    return head + struct.pack(">I", zlib.crc32(head))


def encode_record(rtype: RecordType, flags: int, body: bytes) -> bytes:
    return encode_record_header(rtype, flags, len(body)) + body


def decode_record_header(buf: bytes, offset: int) -> RecordHeader:
    """Parse and validate a 16-byte record header found at file offset `offset`."""
    if len(buf) < RECORD_HEADER_LEN:
        raise FormatError("truncated record header", offset=offset, kind="truncated")
    sync, rtype, flags, reserved, length = _RH.unpack_from(buf)
    if sync != RECORD_SYNC:
        raise FormatError("no record sync marker", offset=offset)
    (crc,) = struct.unpack_from(">I", buf, 12)
    if crc != zlib.crc32(buf[:12]):
        raise FormatError("record header checksum mismatch", offset=offset, kind="corrupt-header")
    try:
        rt = RecordType(rtype)
    except ValueError:
        raise FormatError(f"unknown record type 0x{rtype:02x}", offset=offset) from None
    if flags & ~ALLOWED_FLAGS[rt]:
        raise FormatError(f"{rt.name} record has undefined flags 0x{flags:02x}", offset=offset)
    if reserved:
        raise FormatError(f"{rt.name} record reserved field is not zero", offset=offset)
    if length > MAX_BODY[rt]:
        raise FormatError(
            f"{rt.name} record claims {length} body bytes, limit is {MAX_BODY[rt]}", offset=offset
        )
    return RecordHeader(rt, flags, length)


def _need(body: bytes, n: int, what: str, offset: int) -> None:
    if len(body) != n:
        raise FormatError(f"{what} body is {len(body)} bytes, expected {n}", offset=offset)


# --- HEADER -----------------------------------------------------------------------------------------

_HDR = struct.Struct(f">BBH{HANDLE_LEN}s{SEGMENT_ID_LEN}sQq{HASH_LEN}s{PUBKEY_LEN}s{HASH_LEN}s")
HEADER_BODY_LEN = _HDR.size  # 148


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    suite: Suite
    camera_handle: bytes
    segment_id: bytes
    seq: int
    created_us: int
    prev_link: bytes  # segment digest of the previous segment of this camera; zeros if none is known
    signer: bytes  # Ed25519 public key
    keys_digest: bytes  # SHA-256 of the KEYS record (inline or detached)
    keys_detached: bool = False

    def encode_body(self) -> bytes:
        return _HDR.pack(
            FORMAT_VERSION, self.suite, 0, self.camera_handle, self.segment_id, self.seq,
            self.created_us, self.prev_link, self.signer, self.keys_digest,
        )

    @classmethod
    def decode(cls, body: bytes, flags: int, offset: int) -> SegmentHeader:
        if len(body) >= 1 and body[0] != FORMAT_VERSION:
            raise UnsupportedVersion(f"header version {body[0]} is not supported (this reader: 1)", offset=offset)
        _need(body, HEADER_BODY_LEN, "HEADER", offset)
        ver, suite, reserved, handle, seg_id, seq, created, prev, signer, kd = _HDR.unpack(body)
        try:
            st = Suite(suite)
        except ValueError:
            raise UnsupportedVersion(f"unknown cipher suite {suite}", offset=offset) from None
        if reserved:
            raise FormatError("HEADER reserved field is not zero", offset=offset)
        from .constants import RecordFlag  # local: keep the import list above readable

        return cls(st, handle, seg_id, seq, created, prev, signer, kd, bool(flags & RecordFlag.KEYS_DETACHED))


# --- KEYS -------------------------------------------------------------------------------------------

_STANZA = struct.Struct(f">B{KEY_ID_LEN}sH")
HPKE_STANZA_LEN = 32 + 32 + TAG_LEN  # enc || sealed data key


@dataclass(frozen=True, slots=True)
class Stanza:
    type: StanzaType
    key_id: bytes
    body: bytes


def encode_keys_body(stanzas: list[Stanza]) -> bytes:
    if not 1 <= len(stanzas) <= MAX_STANZAS:
        raise ValueError(f"a segment needs 1..{MAX_STANZAS} recipients, got {len(stanzas)}")
    out = [struct.pack(">H", len(stanzas))]
    for s in stanzas:
        if len(s.body) > MAX_STANZA_BODY:
            raise ValueError(f"recipient stanza of {len(s.body)} bytes exceeds {MAX_STANZA_BODY}")
        out.append(_STANZA.pack(s.type, s.key_id, len(s.body)) + s.body)
    return b"".join(out)


def decode_keys_body(body: bytes, offset: int) -> list[Stanza]:
    if len(body) < 2:
        raise FormatError("KEYS body too short", offset=offset)
    (count,) = struct.unpack_from(">H", body)
    if not 1 <= count <= MAX_STANZAS:
        raise FormatError(f"KEYS lists {count} recipients, allowed 1..{MAX_STANZAS}", offset=offset)
    pos, out = 2, []
    for i in range(count):
        if pos + _STANZA.size > len(body):
            raise FormatError(f"recipient stanza {i} truncated", offset=offset)
        stype, key_id, n = _STANZA.unpack_from(body, pos)
        pos += _STANZA.size
        if n > MAX_STANZA_BODY or pos + n > len(body):
            raise FormatError(f"recipient stanza {i} claims {n} bytes, which do not fit", offset=offset)
        try:
            st = StanzaType(stype)
        except ValueError:
            raise FormatError(f"recipient stanza {i} has unknown type {stype}", offset=offset) from None
        if st is StanzaType.HPKE_X25519 and n != HPKE_STANZA_LEN:
            raise FormatError(f"HPKE stanza {i} is {n} bytes, expected {HPKE_STANZA_LEN}", offset=offset)
        out.append(Stanza(st, key_id, body[pos : pos + n]))
        pos += n
    if pos != len(body):
        raise FormatError(f"{len(body) - pos} trailing bytes after recipient stanzas", offset=offset)
    return out


# --- CHUNK ------------------------------------------------------------------------------------------

_CHUNK = struct.Struct(f">{HANDLE_LEN}s{SEGMENT_ID_LEN}sIq")
CHUNK_CLEAR_LEN = _CHUNK.size  # 44
MIN_CHUNK_CIPHERTEXT = 1 + 4 + TAG_LEN  # kind + pad_len + tag


@dataclass(frozen=True, slots=True)
class ChunkHead:
    camera_handle: bytes
    segment_id: bytes
    index: int
    capture_us: int

    def encode(self) -> bytes:
        return _CHUNK.pack(self.camera_handle, self.segment_id, self.index, self.capture_us)

    @classmethod
    def decode(cls, body: bytes, offset: int) -> ChunkHead:
        if len(body) < CHUNK_CLEAR_LEN + MIN_CHUNK_CIPHERTEXT:
            raise FormatError(f"CHUNK body of {len(body)} bytes is too short", offset=offset)
        return cls(*_CHUNK.unpack_from(body))


# --- GAP --------------------------------------------------------------------------------------------

_GAP = struct.Struct(f">{HANDLE_LEN}s{SEGMENT_ID_LEN}sIB3xqqQQH")


@dataclass(frozen=True, slots=True)
class Gap:
    camera_handle: bytes
    segment_id: bytes
    index: int
    reason: GapReason
    from_us: int  # start of the missing time range (UTC microseconds)
    until_us: int  # end of the missing time range
    lost_first_seq: int  # first segment seq that may be missing or unfinished
    lost_count: int  # how many segment seqs from lost_first_seq; 0 when no segment was lost
    detail: str  # short human note, UTF-8, no camera names

    def encode(self) -> bytes:
        d = self.detail.encode()
        return _GAP.pack(
            self.camera_handle, self.segment_id, self.index, self.reason, self.from_us, self.until_us,
            self.lost_first_seq, self.lost_count, len(d),
        ) + d

    @classmethod
    def decode(cls, body: bytes, offset: int) -> Gap:
        if len(body) < _GAP.size or len(body) > MAX_GAP_BODY:
            raise FormatError(f"GAP body of {len(body)} bytes is malformed", offset=offset)
        h, sid, idx, reason, f, u, first, count, n = _GAP.unpack_from(body)
        if _GAP.size + n != len(body):
            raise FormatError("GAP detail length does not match the body", offset=offset)
        try:
            r = GapReason(reason)
            detail = body[_GAP.size :].decode()
        except (ValueError, UnicodeDecodeError):
            raise FormatError(f"GAP has unknown reason {reason} or a non-UTF-8 detail", offset=offset) from None
        if u < f:
            raise FormatError("GAP ends before it starts", offset=offset)
        return cls(h, sid, idx, r, f, u, first, count, detail)


# --- CHECKPOINT / INDEX / TRAILER ---------------------------------------------------------------------

_CKPT = struct.Struct(f">I{HASH_LEN}s{SIG_LEN}s")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    count: int  # chained records covered
    chain: bytes
    signature: bytes

    def encode(self) -> bytes:
        return _CKPT.pack(self.count, self.chain, self.signature)

    @classmethod
    def decode(cls, body: bytes, offset: int) -> Checkpoint:
        _need(body, _CKPT.size, "CHECKPOINT", offset)
        return cls(*_CKPT.unpack(body))


_ENTRY = struct.Struct(f">BBHqQI{HASH_LEN}s")
INDEX_ENTRY_LEN = _ENTRY.size  # 56


@dataclass(frozen=True, slots=True)
class IndexEntry:
    type: RecordType
    flags: int
    time_us: int  # CHUNK: capture time; GAP: from_us
    offset: int  # file offset of the record's first byte
    length: int  # whole record, header included
    digest: bytes  # SHA-256 of the whole record


def encode_index_body(entries: list[IndexEntry]) -> bytes:
    return struct.pack(">I", len(entries)) + b"".join(
        _ENTRY.pack(e.type, e.flags, 0, e.time_us, e.offset, e.length, e.digest) for e in entries
    )


def decode_index_body(body: bytes, offset: int) -> list[IndexEntry]:
    if len(body) < 4:
        raise FormatError("INDEX body too short", offset=offset)
    (n,) = struct.unpack_from(">I", body)
    if n > MAX_INDEX_ENTRIES or len(body) != 4 + n * INDEX_ENTRY_LEN:
        raise FormatError(f"INDEX claims {n} entries in {len(body)} bytes", offset=offset)
    out = []
    for i in range(n):
        t, flags, reserved, time_us, off, length, digest = _ENTRY.unpack_from(body, 4 + i * INDEX_ENTRY_LEN)
        if t not in (RecordType.CHUNK, RecordType.GAP) or reserved or flags & ~ALLOWED_FLAGS[RecordType(t)]:
            raise FormatError(f"INDEX entry {i} is malformed", offset=offset)
        out.append(IndexEntry(RecordType(t), flags, time_us, off, length, digest))
    return out


_TRAILER = struct.Struct(f">IQ{HASH_LEN}s{HASH_LEN}s{HASH_LEN}s{SIG_LEN}s")
TRAILER_BODY_LEN = _TRAILER.size  # 172
TRAILER_RECORD_LEN = RECORD_HEADER_LEN + TRAILER_BODY_LEN


@dataclass(frozen=True, slots=True)
class Trailer:
    """The signed manifest of a closed segment. The signature covers every field before it."""

    count: int  # chained records in the segment
    index_offset: int  # file offset of the INDEX record
    header_digest: bytes  # see digests.header_digest
    index_digest: bytes  # SHA-256 of the whole INDEX record
    chain: bytes  # chain value after the last chained record
    signature: bytes

    def signed_fields(self) -> bytes:
        return _TRAILER.pack(
            self.count, self.index_offset, self.header_digest, self.index_digest, self.chain, bytes(SIG_LEN)
        )[:-SIG_LEN]

    def encode(self) -> bytes:
        return _TRAILER.pack(
            self.count, self.index_offset, self.header_digest, self.index_digest, self.chain, self.signature
        )

    @classmethod
    def decode(cls, body: bytes, offset: int) -> Trailer:
        _need(body, TRAILER_BODY_LEN, "TRAILER", offset)
        return cls(*_TRAILER.unpack(body))
