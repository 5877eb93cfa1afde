"""SegmentWriter: seal one segment as it is recorded (streamable, appendable).

Write order (what a crash leaves behind is always a valid prefix):
    MAGIC, HEADER, [KEYS], (CHUNK | GAP | CHECKPOINT)*, final CHUNK, INDEX, TRAILER
The data key lives in a bytearray and is overwritten by close() or abort(); after that nothing the
writer holds can decrypt the segment (forward secrecy against a later theft of the hub).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import aead as _aead
from .constants import (
    HASH_LEN,
    MAGIC,
    MAX_CHAINED_RECORDS,
    MAX_CHUNK_PLAINTEXT,
    RECORD_HEADER_LEN,
    SEGMENT_ID_LEN,
    TAG_LEN,
    GapReason,
    PayloadKind,
    RecordFlag,
    RecordType,
    Suite,
)
from .digests import (
    chain_next,
    chain_start,
    checkpoint_message,
    chunk_ad,
    header_digest,
    hpke_info,
    segment_digest,
    segment_message,
    sha256,
)
from .records import (
    CHUNK_CLEAR_LEN,
    Checkpoint,
    ChunkHead,
    Gap,
    IndexEntry,
    SegmentHeader,
    Trailer,
    encode_index_body,
    encode_keys_body,
    encode_record,
    encode_record_header,
)


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class Signer:
    """What the writer needs from the hub key (sealcam.keys.hub.HubKey satisfies it)."""

    public: bytes

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Padding:
    """Pad every chunk record up to a size bucket, so record sizes do not reveal content.

    mode "pow2": the next power of two >= max(size, quantum); mode "multiple": the next multiple of quantum.
    """

    mode: str = "pow2"
    quantum: int = 4096

    def __post_init__(self) -> None:
        if self.mode not in ("pow2", "multiple") or not 64 <= self.quantum <= (16 << 20):
            raise ValueError("padding: mode must be pow2|multiple and quantum 64 B..16 MiB")

    def target(self, size: int) -> int:
        if self.mode == "multiple":
            return -(-size // self.quantum) * self.quantum
        t = self.quantum
        while t < size:
            t <<= 1
        return t


@dataclass(frozen=True, slots=True)
class SealedSegment:
    header: SegmentHeader
    digest: bytes  # becomes the next segment's prev_link
    count: int  # chained records
    size: int  # bytes of the segment file
    first_us: int | None
    last_us: int | None


class SegmentWriter:
    def __init__(
        self,
        write: Callable[[bytes], object],
        *,
        signer: Signer,
        recipients: Sequence,
        camera_handle: bytes,
        seq: int,
        prev_link: bytes = bytes(HASH_LEN),
        suite: Suite = Suite.AES_256_GCM,
        padding: Padding | None = None,
        checkpoint_every: int = 0,
        write_keys: Callable[[bytes], object] | None = None,
        clock: Callable[[], int] = wall_clock_us,
    ) -> None:
        if not recipients:
            raise ValueError("a segment needs at least one recipient")
        if len(camera_handle) != 16 or len(prev_link) != HASH_LEN or not 0 <= seq < 2**64:
            raise ValueError("camera_handle must be 16 bytes, prev_link 32 bytes, seq a u64")
        self._write = write
        self._signer = signer
        self._padding = padding
        self._checkpoint_every = checkpoint_every
        self._clock = clock
        self._key: bytearray | None = _aead.fresh_data_key()
        segment_id = os.urandom(SEGMENT_ID_LEN)
        info = hpke_info(camera_handle, segment_id, seq)
        stanzas = [r.wrap(self._key, info) for r in recipients]
        keys_record = encode_record(RecordType.KEYS, 0, encode_keys_body(stanzas))
        flags = RecordFlag.KEYS_DETACHED if write_keys else 0
        self.header = SegmentHeader(
            suite, camera_handle, segment_id, seq, clock(), prev_link, signer.public,
            sha256(keys_record), bool(write_keys),
        )
        header_record = encode_record(RecordType.HEADER, flags, self.header.encode_body())
        self._hdr_digest = header_digest(header_record)
        self._chain = chain_start(self._hdr_digest)
        self._aead = _aead.new_aead(suite, self._key)
        self._scratch = bytearray()  # framed plaintext of the chunk being sealed; wiped after each use
        self._entries: list[IndexEntry] = []
        self._offset = 0
        self._closed = False
        self._final = False
        self._emit(MAGIC)
        self._emit(header_record)
        if write_keys:
            write_keys(MAGIC + keys_record)
        else:
            self._emit(keys_record)

    # -- public API -----------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self._entries)

    @property
    def offset(self) -> int:
        return self._offset

    def add_chunk(
        self, payload: bytes | memoryview, *, kind: PayloadKind = PayloadKind.DATA,
        capture_us: int | None = None, key: bool = False, final: bool = False,
    ) -> IndexEntry:
        """Seal one chunk and write it out. `final=True` closes the chunk sequence (close() must follow)."""
        self._check_open()
        if len(payload) + _aead.FRAME_OVERHEAD > MAX_CHUNK_PLAINTEXT:
            raise ValueError(f"chunk payload of {len(payload)} bytes exceeds the format's limit")
        t = self._clock() if capture_us is None else capture_us
        self._check_time(t)
        unpadded = RECORD_HEADER_LEN + CHUNK_CLEAR_LEN + len(payload) + _aead.FRAME_OVERHEAD + TAG_LEN
        pad = self._padding.target(unpadded) - unpadded if self._padding else 0
        if len(payload) + _aead.FRAME_OVERHEAD + pad > MAX_CHUNK_PLAINTEXT:
            pad = 0  # never exceed the format's bound for the sake of padding
        flags = (RecordFlag.KEY if key else 0) | (RecordFlag.FINAL if final else 0)
        index = len(self._entries)
        clear = ChunkHead(self.header.camera_handle, self.header.segment_id, index, t).encode()
        need = len(payload) + _aead.FRAME_OVERHEAD + pad
        if len(self._scratch) < need:  # reused: a fresh buffer per chunk costs more than the AEAD
            _aead.wipe(self._scratch)
            self._scratch = bytearray(need + need // 4)
        framed = _aead.frame_into(self._scratch, kind, payload, pad)
        body_len = CHUNK_CLEAR_LEN + len(framed) + TAG_LEN
        record = bytearray(RECORD_HEADER_LEN + body_len)
        record[: RECORD_HEADER_LEN + CHUNK_CLEAR_LEN] = encode_record_header(RecordType.CHUNK, flags, body_len) + clear
        ad = chunk_ad(self._hdr_digest, RecordType.CHUNK, flags, clear)
        _aead.seal_into(self._aead, index, framed, ad, memoryview(record)[RECORD_HEADER_LEN + CHUNK_CLEAR_LEN :])
        _aead.wipe(framed)
        entry = self._chained(RecordType.CHUNK, flags, t, record)
        if final:
            self._final = True
        return entry

    def add_gap(
        self, reason: GapReason, *, from_us: int, until_us: int, lost_first_seq: int = 0,
        lost_count: int = 0, detail: str = "",
    ) -> IndexEntry:
        """Record, signed but not encrypted, that data the writer knows about is missing."""
        self._check_open()
        if len(detail.encode()) > 256:
            raise ValueError("gap detail is limited to 256 bytes")
        gap = Gap(self.header.camera_handle, self.header.segment_id, len(self._entries), reason,
                  from_us, until_us, lost_first_seq, lost_count, detail)
        return self._chained(RecordType.GAP, 0, from_us, encode_record(RecordType.GAP, 0, gap.encode()))

    def checkpoint(self) -> None:
        """Sign the chain so far, so a live reader can verify before the segment closes."""
        self._check_open()
        n = len(self._entries)
        sig = self._signer.sign(checkpoint_message(self._hdr_digest, n, self._chain))
        self._emit(encode_record(RecordType.CHECKPOINT, 0, Checkpoint(n, self._chain, sig).encode()))

    def close(self) -> SealedSegment:
        """Finish the segment: final chunk (if none yet), INDEX, signed TRAILER. Wipes the data key."""
        if self._closed:  # not _check_open(): close() is what must follow a final chunk
            raise RuntimeError("segment already closed")
        if not self._final:
            # Never before the last chunk's time: callers may stamp chunks ahead of this clock (fMP4 times).
            last = next((e.time_us for e in reversed(self._entries) if e.type is RecordType.CHUNK), None)
            now = self._clock()
            self.add_chunk(b"", kind=PayloadKind.FILLER, capture_us=now if last is None else max(now, last),
                           final=True)
        index_offset = self._offset
        index_record = encode_record(RecordType.INDEX, 0, encode_index_body(self._entries))
        self._emit(index_record)
        unsigned = Trailer(len(self._entries), index_offset, self._hdr_digest, sha256(index_record),
                           self._chain, b"")
        fields = unsigned.signed_fields()
        trailer = dataclasses.replace(unsigned, signature=self._signer.sign(segment_message(fields)))
        self._emit(encode_record(RecordType.TRAILER, 0, trailer.encode()))
        self._erase()
        chunks = [e.time_us for e in self._entries if e.type is RecordType.CHUNK]
        return SealedSegment(self.header, segment_digest(fields), len(self._entries), self._offset,
                             min(chunks, default=None), max(chunks, default=None))

    def abort(self) -> None:
        """Stop without closing (the segment stays unsigned, as after a crash). Wipes the data key."""
        self._erase()

    # -- internals -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("segment already closed")
        if self._final:
            raise RuntimeError("final chunk already written; only close() may follow")
        if len(self._entries) >= MAX_CHAINED_RECORDS - 1:
            raise RuntimeError("segment is full; start a new one")

    def _check_time(self, t: int) -> None:
        last = next((e.time_us for e in reversed(self._entries) if e.type is RecordType.CHUNK), None)
        if last is not None and t < last:
            raise ValueError(f"capture time went backwards ({t} < {last} us)")

    def _chained(self, rtype: RecordType, flags: int, t: int, record: bytes | bytearray) -> IndexEntry:
        digest = hashlib.sha256(record).digest()
        entry = IndexEntry(rtype, flags, t, self._offset, len(record), digest)
        self._entries.append(entry)
        self._chain = chain_next(self._chain, digest)
        self._emit(record)
        if self._checkpoint_every and len(self._entries) % self._checkpoint_every == 0 and not (
            flags & RecordFlag.FINAL
        ):
            self.checkpoint()
        return entry

    def _emit(self, data: bytes | bytearray) -> None:
        self._write(data)
        self._offset += len(data)

    def _erase(self) -> None:
        self._closed = True
        self._aead = None
        _aead.wipe(self._key)
        self._key = None
        _aead.wipe(self._scratch)

