"""Decryption: unwrap a segment's data key, then stream verified plaintext, seeking with the signed index.

Two paths:
- closed segment with a valid signed tail: read TRAILER and INDEX from the end, check the signature,
  then read only the records needed (a seek decrypts nothing before its key frame); every record's
  digest is checked against the signed index before it is decrypted, and a full read also checks that
  nothing but checkpoints sits between signed records.
- anything else (a live or damaged segment): a full verification first; records that no signature
  covers are decrypted only when the caller forces it, and each one let through is reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import aead as _aead
from . import problems as P
from .constants import MAGIC, PayloadKind, RecordFlag, RecordType
from .digests import (
    chunk_ad,
    header_digest,
    hpke_info,
    segment_digest,
    segment_message,
    sha256,
    verify_signature,
)
from .errors import DecryptError, FormatError, NoMatchingIdentity, SealcamError
from .reader import read_record_at, read_tail
from .records import CHUNK_CLEAR_LEN, Gap, SegmentHeader, decode_keys_body, decode_record_header
from .verify import RecordInfo, SegmentReport, verify_segment


class VerificationFailed(SealcamError):
    def __init__(self, problems: list[P.Problem]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} verification problem(s); first: {problems[0].kind} at {problems[0].where()}")


@dataclass(slots=True)
class Plain:
    """One decrypted chunk."""

    index: int
    time_us: int
    kind: PayloadKind
    key: bool
    payload: memoryview


@dataclass(slots=True)
class DecryptStats:
    chunks: int = 0
    bytes: int = 0
    let_through: list[P.Problem] = field(default_factory=list)


def light_report(
    path: str | Path, *, signer: bytes | None = None, keys_path: str | Path | None = None,
    fileobj: BinaryIO | None = None,
) -> SegmentReport | None:
    """Verify a closed segment from its header and signed tail only (no chunk is read).

    Returns None when the segment is not closed or its tail does not verify: use verify_segment then.
    `fileobj`: read from this seekable binary file instead of opening `path` (see verify_segment).
    """
    path = Path(path)
    rep = SegmentReport(str(path))
    try:
        with nullcontext(fileobj) if fileobj is not None else open(path, "rb") as f:
            rep.size = f.seek(0, 2)
            f.seek(0)
            if f.read(len(MAGIC)) != MAGIC:
                return None
            hrec = read_record_at(f, len(MAGIC), RecordType.HEADER)
            hdr = SegmentHeader.decode(bytes(hrec.body), hrec.header.flags, hrec.offset)
            tail = read_tail(f, rep.size)
            if tail is None:
                return None
            trailer, idx, entries = tail
            if signer is not None and hdr.signer != signer:
                return None
            if not verify_signature(hdr.signer, trailer.signature, segment_message(trailer.signed_fields())):
                return None
            if trailer.header_digest != header_digest(hrec.data) or trailer.index_digest != sha256(idx.data):
                return None
            if trailer.count != len(entries) or not entries or not entries[-1].flags & RecordFlag.FINAL:
                return None
            rep.header, rep.header_digest, rep.header_offset = hdr, trailer.header_digest, hrec.offset
            rep.stanzas = _read_stanzas(f, path, hdr, hrec.offset + hrec.header.total, keys_path)
            rep.trailer, rep.index = trailer, entries
            for j, e in enumerate(entries):
                rep.records.append(RecordInfo(e.type, e.flags, j, e.time_us, e.offset, e.length, e.digest,
                                              hdr.camera_handle, hdr.segment_id))
                if e.type is RecordType.GAP:
                    raw = read_record_at(f, e.offset, RecordType.GAP, e.length)
                    if sha256(raw.data) != e.digest:
                        return None
                    rep.gaps.append(Gap.decode(bytes(raw.body), e.offset))
    except (FormatError, OSError):
        return None
    rep.digest = segment_digest(trailer.signed_fields())
    rep.verified_count = trailer.count
    rep.signer_ok = True
    return rep


def _read_stanzas(f: BinaryIO, path: Path, hdr: SegmentHeader, keys_offset: int, keys_path) -> list | None:  # noqa: ANN001
    if hdr.keys_detached:
        kp = Path(keys_path) if keys_path else path.with_name(path.name + ".keys")
        try:
            data = kp.read_bytes()
        except OSError:
            return None
        if not data.startswith(MAGIC) or sha256(data[len(MAGIC) :]) != hdr.keys_digest:
            return None
        body = data[len(MAGIC) + 16 :]
        decode_record_header(data[len(MAGIC) : len(MAGIC) + 16], len(MAGIC))
        return decode_keys_body(body, len(MAGIC))
    raw = read_record_at(f, keys_offset, RecordType.KEYS)
    if sha256(raw.data) != hdr.keys_digest:
        raise FormatError("KEYS record differs from the header's commitment", offset=keys_offset)
    return decode_keys_body(bytes(raw.body), keys_offset)


def unwrap_key(rep: SegmentReport, identities: Sequence) -> bytearray:
    """The segment's data key from the first identity that can unwrap one of its stanzas."""
    hdr = rep.header
    if rep.stanzas is None:
        raise NoMatchingIdentity(f"{rep.path}: no recipient stanzas (detached key file missing or shredded)")
    info = hpke_info(hdr.camera_handle, hdr.segment_id, hdr.seq)
    for st in rep.stanzas:
        for ident in identities:
            key = ident.unwrap(st, info)
            if key is not None:
                return key
    ids = ", ".join(s.key_id.hex() for s in rep.stanzas)
    raise NoMatchingIdentity(f"{rep.path}: none of your identities is a recipient (recipient key ids: {ids})")


def select(rep: SegmentReport, since_us: int | None, until_us: int | None, *,
           upto: int | None = None) -> list[RecordInfo]:
    """Chunks to decrypt for a time range: from the last key chunk at or before `since`; chunk 0 always
    (it carries the fMP4 init segment when there is one). `upto`: only the first `upto` chained records
    (an unfinished segment's checkpoint-signed prefix, `rep.verified_count`)."""
    chunks = [r for r in rep.records[:upto] if r.type is RecordType.CHUNK]
    if since_us is None and until_us is None:
        return chunks
    start = 0
    if since_us is not None:
        for i, r in enumerate(chunks):
            if r.time_us > since_us:
                break
            if r.flags & RecordFlag.KEY:
                start = i
    picked = [r for r in chunks[start:] if until_us is None or r.time_us <= until_us]
    if start > 0 and chunks:
        picked.insert(0, chunks[0])
    return picked


def _start_us(r: SegmentReport) -> int | None:
    chunks = [x for x in r.records if x.type is RecordType.CHUNK]
    keyed = [x.time_us for x in chunks if x.flags & RecordFlag.KEY]
    return keyed[0] if keyed else (chunks[0].time_us if chunks else None)


def segments_in_range(segs: list[SegmentReport], since: int | None, until: int | None) -> list[SegmentReport]:
    """Drop whole segments outside [since, until]: before `since` unless it is the last one starting at or
    before `since` (its tail may hold the key frame to start from)."""
    keep = []
    by_cam: dict[bytes, list[SegmentReport]] = {}
    for r in segs:
        by_cam.setdefault(r.header.camera_handle, []).append(r)
    for cam in by_cam.values():
        starts = [_start_us(r) for r in cam]
        first = 0
        if since is not None:
            for i, s in enumerate(starts):
                if s is not None and s <= since:
                    first = i
        for r, s in zip(cam[first:], starts[first:], strict=True):
            if until is None or s is None or s <= until:
                keep.append(r)
    return keep


def iter_plain(
    rep: SegmentReport, key: bytearray, records: list[RecordInfo], *, force: bool = False,
    stats: DecryptStats | None = None, full_read: bool = False, reuse_buffer: bool = False,
    fileobj: BinaryIO | None = None,
) -> Iterator[Plain]:
    """Decrypt `records` (from `select`). Digests are checked against the signed index when there is one;
    `full_read` also checks that only checkpoints sit between the signed records.

    `reuse_buffer`: decrypt every chunk into one buffer (faster); each Plain.payload is then valid only until
    the next item is drawn, so write it out before asking for the next. The buffer is wiped at the end.
    `fileobj`: read records from this seekable binary file instead of opening `rep.path`."""
    stats = stats if stats is not None else DecryptStats()
    longest = max((r.length for r in records), default=0)
    scratch = bytearray(longest) if reuse_buffer else None  # plaintext
    raw_buf = bytearray(longest) if reuse_buffer else None  # ciphertext records as read
    try:
        yield from _iter_plain(rep, key, records, force, stats, full_read, scratch, raw_buf, fileobj)
    finally:
        _aead.wipe(scratch)


def _iter_plain(
    rep: SegmentReport, key: bytearray, records: list[RecordInfo], force: bool, stats: DecryptStats,
    full_read: bool, scratch: bytearray | None, raw_buf: bytearray | None, fileobj: BinaryIO | None = None,
) -> Iterator[Plain]:
    hdr = rep.header
    aead = _aead.new_aead(hdr.suite, key)
    signed = rep.trailer is not None and rep.digest is not None
    covered = rep.verified_count
    chained_pos = {r.offset: j for j, r in enumerate(rep.records)}
    gaps_at = {r.offset: r for r in rep.records if r.type is RecordType.GAP}
    with nullcontext(fileobj) if fileobj is not None else open(rep.path, "rb") as f:
        expect_at = None
        if full_read and signed:
            expect_at = _end_of_keys(f, rep)
        for r in records:
            if expect_at is not None:
                _check_between(f, expect_at, r.offset, rep, gaps_at)
                expect_at = r.offset + r.length
            try:
                raw = read_record_at(f, r.offset, r.type, r.length, into=raw_buf)
            except FormatError as exc:
                if not force:
                    raise VerificationFailed([P.Problem(exc.kind, exc.message, rep.path, r.offset, r.index)]) from exc
                stats.let_through.append(P.Problem(exc.kind, "skipped: " + exc.message, rep.path, r.offset, r.index))
                continue
            j = chained_pos.get(r.offset, r.index)
            if (signed or j < covered) and hashlib.sha256(raw.data).digest() != r.digest:
                what = "the signed index" if signed else "what the checkpoint signed"
                prob = P.Problem(P.MODIFIED, f"record differs from {what}", rep.path, r.offset, j)
                if not force:
                    raise VerificationFailed([prob])
                stats.let_through.append(prob)
            elif not signed and j >= covered:
                if not force:
                    raise VerificationFailed([P.Problem(P.UNVERIFIED, "record is not covered by a signature",
                                                        rep.path, r.offset, j)])
                stats.let_through.append(P.Problem(P.UNVERIFIED, "let through: no signature covers it",
                                                   rep.path, r.offset, j))
            body = raw.body
            clear = bytes(body[:CHUNK_CLEAR_LEN])
            idx = int.from_bytes(clear[32:36], "big")
            ad = chunk_ad(rep.header_digest, RecordType.CHUNK, raw.header.flags, clear)
            try:
                kind, payload = _aead.open_chunk(aead, idx, body[CHUNK_CLEAR_LEN:], ad, offset=r.offset,
                                                 scratch=scratch)
            except DecryptError as exc:
                if not force:
                    raise VerificationFailed([P.Problem(P.MODIFIED, str(exc), rep.path, r.offset, j)]) from exc
                stats.let_through.append(P.Problem(P.MODIFIED, "skipped: " + str(exc), rep.path, r.offset, j))
                continue
            stats.chunks += 1
            stats.bytes += len(payload)
            yield Plain(j, r.time_us, kind, bool(raw.header.flags & RecordFlag.KEY), payload)
        if expect_at is not None and len(records) == sum(r.type is RecordType.CHUNK for r in rep.records):
            _check_between(f, expect_at, rep.trailer.index_offset, rep, gaps_at)


def _end_of_keys(f: BinaryIO, rep: SegmentReport) -> int:
    hrec = read_record_at(f, rep.header_offset, RecordType.HEADER)
    end = hrec.offset + hrec.header.total
    if not rep.header.keys_detached:
        end += read_record_at(f, end, RecordType.KEYS).header.total
    return end


def _check_between(f: BinaryIO, start: int, end: int, rep: SegmentReport, gaps: dict[int, RecordInfo]) -> None:
    """Only CHECKPOINT records, and the signed GAP records where the index puts them (`gaps`, by offset),
    may sit between signed chunks."""
    pos = start
    while pos < end:
        try:
            gap = gaps.get(pos)
            if gap is not None:
                raw = read_record_at(f, pos, RecordType.GAP, gap.length)
                if sha256(raw.data) != gap.digest:
                    raise FormatError("GAP record differs from the signed index", offset=pos)
            else:
                raw = read_record_at(f, pos, RecordType.CHECKPOINT)
        except FormatError as exc:
            raise VerificationFailed([P.Problem(P.MALFORMED, "bytes not covered by the signature between "
                                                f"signed records ({exc.message})", rep.path, pos)]) from exc
        pos += raw.header.total
    if pos != end:
        raise VerificationFailed([P.Problem(P.MALFORMED, "records overlap the signed index", rep.path, start)])


def decrypt_segment(
    path: str | Path, identities: Sequence, write: Callable[[memoryview], object], *,
    signer: bytes | None = None, since_us: int | None = None, until_us: int | None = None,
    force: bool = False, kinds: frozenset[PayloadKind] | None = None,
) -> DecryptStats:
    """Convenience for one file: verify (light, else full), unwrap, decrypt, write stream payloads.

    With `force`, always the full, resynchronising read: chunks are taken where they are found, not where
    the signed index says, so moved or shifted chunks that still authenticate are recovered (and reported)."""
    from .constants import STREAM_KINDS

    kinds = STREAM_KINDS if kinds is None else kinds
    rep = (None if force else light_report(path, signer=signer)) or verify_segment(path, signer=signer)
    if rep.header is None:
        raise VerificationFailed(rep.problems or [P.Problem(P.MALFORMED, "no header", str(path))])
    if rep.problems and not force:
        raise VerificationFailed(rep.problems)
    stats = DecryptStats(let_through=list(rep.problems))
    key = unwrap_key(rep, identities)
    try:
        recs = select(rep, since_us, until_us)
        full = since_us is None and until_us is None
        for plain in iter_plain(rep, key, recs, force=force, stats=stats, full_read=full, reuse_buffer=True):
            if plain.kind in kinds:
                write(plain.payload)
    finally:
        _aead.wipe(key)
    return stats
