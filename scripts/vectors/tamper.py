"""Cases made by byte surgery on one valid segment. Offsets come from the writer's IndexEntry objects
(chained records) or from the library's reader over the still-valid file (other records), never from
hard-coded positions; field positions inside a record follow the v1 layout (records.py)."""

from __future__ import annotations

import struct

from sealcam.format.constants import HANDLE_LEN, MAGIC, RECORD_HEADER_LEN, SEGMENT_ID_LEN, RecordType
from sealcam.format.records import CHUNK_CLEAR_LEN, encode_record_header

from .kit import SEC, T0, Case, ChunkOp, Seg, data_chunks, expect, flip, forced, payload, span, stream, write_segment
from .kit import case as vector

N = 6  # chunks in the base segment
CHUNK_TIME_AT = HANDLE_LEN + SEGMENT_ID_LEN + 4  # capture_us in a CHUNK body: handle, segment id, index
HEADER_SEGMENT_ID_AT = 1 + 1 + 2 + HANDLE_LEN  # in the HEADER body: version, suite, reserved, handle


def _base(c: Case, **kw) -> tuple[Seg, list[ChunkOp]]:  # noqa: ANN003
    ops = data_chunks(c.name, N, T0)
    return write_segment(c.kit, c.file(0), ops, seq=0, **kw), ops


def _without(ops: list[ChunkOp], *drop: int) -> bytes:
    return stream([op for i, op in enumerate(ops) if i not in drop])


def _order(ops: list[ChunkOp], order: list[int]) -> bytes:
    return stream([ops[i] for i in order])


def _refused(c: Case, seg: Seg, buf: bytes | bytearray, problems: tuple[str, ...], force: dict) -> None:
    seg.path.write_bytes(bytes(buf))
    c.done([seg.path], expect(problems=problems, decrypt="refused", force=force))


@vector
def dropped_chunk(c: Case) -> None:
    """Chunk record 2 cut out of a closed segment (everything after it moves up)."""
    seg, ops = _base(c)
    buf = seg.bytes()
    del buf[span(seg.entries[2])]
    _refused(c, seg, buf, ("dropped",), forced(N - 1, _without(ops, 2)))


@vector
def reordered_chunks(c: Case) -> None:
    """Chunk records 2 and 3 swapped (the file keeps its size; INDEX and TRAILER stay in place)."""
    seg, ops = _base(c)
    buf = seg.bytes()
    a, b = span(seg.entries[2]), span(seg.entries[3])
    buf[a.start : b.stop] = buf[b] + buf[a]
    _refused(c, seg, buf, ("reordered",), forced(N, _order(ops, [0, 1, 3, 2, 4, 5])))


@vector
def duplicated_chunk(c: Case) -> None:
    """A copy of chunk record 2 inserted after chunk record 3."""
    seg, ops = _base(c)
    buf = seg.bytes()
    at = span(seg.entries[3]).stop
    buf[at:at] = buf[span(seg.entries[2])]
    _refused(c, seg, buf, ("duplicated",), forced(N + 1, _order(ops, [0, 1, 2, 3, 2, 4, 5])))


@vector
def spliced_camera(c: Case) -> None:
    """Chunk record 2 replaced by chunk record 2 of another camera's segment recorded at the same time
    (same seq, same capture times, same sizes: only the camera handle and segment id tell)."""
    seg, ops = _base(c)
    donor = write_segment(c.kit, c.dir / "donor.tmp", data_chunks(c.name + "/garage", N, T0), seq=0,
                          camera="garage")
    buf, other = seg.bytes(), donor.bytes()
    donor.path.unlink()
    buf[span(seg.entries[2])] = other[span(donor.entries[2])]
    _refused(c, seg, buf, ("spliced-camera",), forced(N - 1, _without(ops, 2)))


@vector
def spliced_segment(c: Case) -> None:
    """Chunk record 2 replaced by chunk record 2 of the same camera's next segment (seq 1, captured a
    minute later): its capture time is later than chunk 3's, which must not be blamed on chunk 3."""
    seg, ops = _base(c)
    donor = write_segment(c.kit, c.dir / "donor.tmp", data_chunks(c.name + "/next", N, T0 + 60 * SEC), seq=1,
                          prev=seg.digest)
    buf, other = seg.bytes(), donor.bytes()
    donor.path.unlink()
    buf[span(seg.entries[2])] = other[span(donor.entries[2])]
    _refused(c, seg, buf, ("spliced-segment",), forced(N - 1, _without(ops, 2)))


@vector
def truncated_mid_chunk(c: Case) -> None:
    """File cut in the middle of chunk record 3 (the last bytes of a closed segment lost)."""
    seg, ops = _base(c)
    e = seg.entries[3]
    _refused(c, seg, seg.bytes()[: e.offset + e.length // 2], ("truncated", "unverified"),
             forced(3, _order(ops, [0, 1, 2])))


@vector
def truncated_at_boundary(c: Case) -> None:
    """File cut right after chunk record 3, a non-final chunk: no final chunk, no trailer."""
    seg, ops = _base(c)
    _refused(c, seg, seg.bytes()[: span(seg.entries[3]).stop], ("missing-final", "unverified"),
             forced(4, _order(ops, [0, 1, 2, 3])))


@vector
def missing_trailer(c: Case) -> None:
    """File cut right after the final chunk: INDEX and the signed TRAILER are gone."""
    seg, ops = _base(c)
    _refused(c, seg, seg.bytes()[: span(seg.entries[-1]).stop], ("missing-trailer", "unverified"),
             forced(N, stream(ops)))


@vector
def unfinished_segment(c: Case) -> None:
    """A segment whose writer stopped after 5 chunks (no final chunk, no trailer), with CHECKPOINTs after
    chunks 1 and 3: chunk 4 is covered by no signature."""
    ops = data_chunks(c.name, 5, T0)
    seg = write_segment(c.kit, c.file(0), ops, seq=0, checkpoint_every=2, close=False)
    _refused(c, seg, seg.bytes(), ("missing-final", "unverified"), forced(5, stream(ops)))


@vector
def retimed_unfinished(c: Case) -> None:
    """Unfinished segment (no trailer) whose chunk 3 capture time, in its clear fields, was set before chunk
    2's: without a signed index the backwards time is what gives it away."""
    ops = data_chunks(c.name, 5, T0)
    seg = write_segment(c.kit, c.file(0), ops, seq=0, close=False)
    buf = seg.bytes()
    struct.pack_into(">q", buf, seg.entries[3].offset + RECORD_HEADER_LEN + CHUNK_TIME_AT, ops[1].t)
    _refused(c, seg, buf, ("retimed", "missing-final", "unverified"), forced(4, _without(ops, 3)))


@vector
def retimed_chunk(c: Case) -> None:
    """Chunk 3's capture_us (clear field) moved 500 ms later: still in order, so only the signed index
    (and the AEAD) can tell."""
    seg, ops = _base(c)
    buf = seg.bytes()
    struct.pack_into(">q", buf, seg.entries[3].offset + RECORD_HEADER_LEN + CHUNK_TIME_AT, ops[3].t + SEC // 2)
    _refused(c, seg, buf, ("retimed",), forced(N - 1, _without(ops, 3)))


@vector
def flipped_header_bit(c: Case) -> None:
    """One bit of the segment id in the HEADER body flipped. Every chunk still names the original segment
    id: the header is what changed, no chunk is spliced. The data key's HPKE info binds the segment id,
    so even a forced decryption finds no usable key."""
    seg, _ = _base(c)
    buf = seg.bytes()
    flip(buf, seg.record(RecordType.HEADER).offset + RECORD_HEADER_LEN + HEADER_SEGMENT_ID_AT + 3)
    _refused(c, seg, buf, ("header-modified",), forced(result="no-identity"))


@vector
def unknown_header_version(c: Case) -> None:
    """HEADER body's version byte set to 2 (magic still says v1): nothing after it can be checked."""
    seg, _ = _base(c)
    buf = seg.bytes()
    buf[seg.record(RecordType.HEADER).offset + RECORD_HEADER_LEN] = 2
    _refused(c, seg, buf, ("unsupported-version",), forced(result="refused"))


@vector
def flipped_record_header_bit(c: Case) -> None:
    """Lowest bit of chunk record 2's body length flipped: the record header's CRC32 fails, the reader
    resynchronises at chunk 3. The record is damaged in place, not dropped."""
    seg, ops = _base(c)
    buf = seg.bytes()
    flip(buf, seg.entries[2].offset + 11)  # body_length is bytes 8..11 of the record header
    _refused(c, seg, buf, ("corrupt-header",), forced(N - 1, _without(ops, 2)))


@vector
def flipped_ciphertext_bit(c: Case) -> None:
    """One bit flipped in the ciphertext of chunk 2."""
    seg, ops = _base(c)
    buf = seg.bytes()
    flip(buf, seg.entries[2].offset + RECORD_HEADER_LEN + CHUNK_CLEAR_LEN + 10, 0x80)
    _refused(c, seg, buf, ("modified",), forced(N - 1, _without(ops, 2)))


@vector
def flipped_tag_bit(c: Case) -> None:
    """One bit flipped in the last byte of chunk record 3 (its AEAD tag)."""
    seg, ops = _base(c)
    buf = seg.bytes()
    flip(buf, span(seg.entries[3]).stop - 1)
    _refused(c, seg, buf, ("modified",), forced(N - 1, _without(ops, 3)))


@vector
def flipped_signature_bit(c: Case) -> None:
    """One bit flipped in the TRAILER's Ed25519 signature (the file's last byte)."""
    seg, ops = _base(c)
    buf = seg.bytes()
    flip(buf, span(seg.record(RecordType.TRAILER)).stop - 1)
    _refused(c, seg, buf, ("bad-signature",), forced(N, stream(ops)))


@vector
def flipped_index_bit(c: Case) -> None:
    """One bit flipped in the digest of INDEX entry 0."""
    seg, ops = _base(c)
    buf = seg.bytes()
    flip(buf, seg.record(RecordType.INDEX).offset + RECORD_HEADER_LEN + 4 + 24 + 5)
    _refused(c, seg, buf, ("index-modified",), forced(N, stream(ops)))


@vector
def flipped_keys_bit(c: Case) -> None:
    """One bit flipped inside the (only) recipient stanza's sealed data key in the KEYS record."""
    seg, _ = _base(c)
    buf = seg.bytes()
    flip(buf, seg.record(RecordType.KEYS).offset + RECORD_HEADER_LEN + 2 + 11 + 40)
    _refused(c, seg, buf, ("keys-modified",), forced(result="no-identity"))


@vector
def keys_swapped(c: Case) -> None:
    """KEYS record replaced by the KEYS record of another segment of the same camera and recipients (the
    same size). The header's commitment fails, and the stanza's HPKE info names the other segment."""
    seg, _ = _base(c)
    donor = write_segment(c.kit, c.dir / "donor.tmp", data_chunks(c.name + "/other", 2, T0), seq=0)
    theirs = donor.record(RecordType.KEYS).data
    donor.path.unlink()
    buf = seg.bytes()
    buf[span(seg.record(RecordType.KEYS))] = theirs
    _refused(c, seg, buf, ("keys-modified",), forced(result="no-identity"))


@vector
def wrong_signer(c: Case) -> None:
    """A well-formed segment for this camera's handle, validly signed by other-hub, verified pinned to hub."""
    seg, ops = _base(c, signer=c.kit.other_hub)
    _refused(c, seg, seg.bytes(), ("wrong-signer",), forced(N, stream(ops)))


@vector
def unknown_version(c: Case) -> None:
    """Magic's version byte set to 2 (SEALCAM\\x02): a v1 reader must refuse the file."""
    seg, _ = _base(c)
    buf = seg.bytes()
    buf[len(MAGIC) - 1] = 2
    _refused(c, seg, buf, ("unsupported-version",), forced(result="refused"))


@vector
def bad_magic(c: Case) -> None:
    """First byte of the magic changed: not a sealcam file at all."""
    seg, _ = _base(c)
    buf = seg.bytes()
    buf[0] ^= 0x20
    _refused(c, seg, buf, ("malformed",), forced(result="refused"))


@vector
def absurd_length(c: Case) -> None:
    """Chunk record 2's header rewritten to claim a body of 0xFFFFFF00 bytes, with a valid CRC32: a reader
    must reject it before allocating, and resynchronise at chunk 3."""
    seg, ops = _base(c)
    buf = seg.bytes()
    e = seg.entries[2]
    buf[e.offset : e.offset + RECORD_HEADER_LEN] = encode_record_header(RecordType.CHUNK, e.flags, 0xFFFFFF00)
    _refused(c, seg, buf, ("malformed",), forced(N - 1, _without(ops, 2)))


@vector
def trailing_garbage(c: Case) -> None:
    """100 bytes of junk appended after the signed TRAILER."""
    seg, ops = _base(c)
    buf = seg.bytes() + payload(c.name, 99, 100)
    _refused(c, seg, buf, ("malformed",), forced(N, stream(ops)))
