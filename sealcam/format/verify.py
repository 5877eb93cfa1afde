"""Full verification of one segment file, without any decryption key.

Reads the file once, front to back, keeping only metadata (never a chunk body longer than one record).
Every problem is named with its kind and place; see problems.py for the kinds.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import problems as P
from .constants import MAGIC, RecordFlag, RecordType
from .digests import (
    chain_next,
    chain_start,
    checkpoint_message,
    header_digest,
    segment_digest,
    segment_message,
    verify_signature,
)
from .errors import FormatError
from .reader import Damage, RawRecord, read_magic, scan
from .records import (
    Checkpoint,
    ChunkHead,
    Gap,
    IndexEntry,
    SegmentHeader,
    Stanza,
    Trailer,
    decode_index_body,
    decode_keys_body,
)


@dataclass(slots=True)
class RecordInfo:
    """A chained record (CHUNK or GAP) as found in the file."""

    type: RecordType
    flags: int
    index: int  # as written in its clear fields
    time_us: int
    offset: int
    length: int
    digest: bytes
    camera_handle: bytes
    segment_id: bytes


@dataclass(slots=True)
class SegmentReport:
    path: str
    header: SegmentHeader | None = None
    header_digest: bytes | None = None
    header_offset: int | None = None
    stanzas: list[Stanza] | None = None
    records: list[RecordInfo] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    trailer: Trailer | None = None
    index: list[IndexEntry] | None = None
    problems: list[P.Problem] = field(default_factory=list)
    digest: bytes | None = None  # segment digest, set when the trailer's signature verified
    signer_ok: bool = False
    #: chained records covered by a valid signature (the trailer's, or the last valid checkpoint's)
    verified_count: int = 0
    size: int = 0
    #: byte ranges the reader skipped as damaged: (first damaged byte, where it resynchronised or None)
    damaged: list[tuple[int, int | None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, message: str, **where) -> None:  # noqa: ANN003
        seq = self.header.seq if self.header else None
        p = P.Problem(kind, message, file=self.path, seq=seq, **where)
        if not any((q.kind, q.offset, q.index) == (p.kind, p.offset, p.index) for q in self.problems):
            self.problems.append(p)


def verify_segment(
    path: str | Path, *, signer: bytes | None = None, keys_path: str | Path | None = None,
    fileobj: BinaryIO | None = None,
) -> SegmentReport:
    """Verify one segment file. `signer` pins the hub's public key; `keys_path` is a detached KEYS file.

    `fileobj`: read the segment from this seekable binary file instead of opening `path` (a remote object
    read with ranged requests); `path` then only names it in the report."""
    path = Path(path)
    rep = SegmentReport(str(path))
    with nullcontext(fileobj) if fileobj is not None else open(path, "rb") as f:
        rep.size = f.seek(0, 2)
        f.seek(0)
        try:
            read_magic(f)
        except FormatError as exc:
            rep.add(exc.kind, exc.message, offset=exc.offset)
            return rep
        _Walker(rep, signer).walk(scan(f))
    if rep.header and rep.header.keys_detached:
        _check_detached_keys(rep, Path(keys_path) if keys_path else _default_keys_path(path))
    return rep


def _default_keys_path(path: Path) -> Path:
    return path.with_name(path.name + ".keys")


def _check_detached_keys(rep: SegmentReport, kpath: Path) -> None:
    try:
        data = kpath.read_bytes()
    except OSError:
        return  # absent key file: verification is still complete; only decryption needs it
    from .digests import sha256

    if not data.startswith(MAGIC) or sha256(data[len(MAGIC) :]) != rep.header.keys_digest:
        rep.add(P.KEYS_MODIFIED, f"detached key file {kpath.name} does not match the signed header")
        return
    try:
        rep.stanzas = decode_keys_body(data[len(MAGIC) + 16 :], len(MAGIC))
    except FormatError as exc:
        rep.add(P.MALFORMED, f"detached key file {kpath.name}: {exc.message}")


class _Walker:
    """One pass over the records, in file order. Split from verify_segment to keep each step short."""

    def __init__(self, rep: SegmentReport, signer: bytes | None) -> None:
        self.rep = rep
        self.pin = signer
        self.chain: bytes | None = None
        self.chains: list[bytes] = []  # chain value after k records, k = 0..n
        self.index_raw: RawRecord | None = None
        self.state = "header"
        self.final_seen_at: int | None = None
        self.checkpoint_problem: tuple[str, str, int] | None = None  # first failing checkpoint
        self.gap_records: list[tuple[Gap, RecordInfo]] = []
        self.index_trusted = False  # the INDEX is the one the trailer's valid signature covers

    def walk(self, items) -> None:  # noqa: ANN001
        for item in items:
            if not self.step(item):
                break
        self.finish()

    def step(self, item: RawRecord | Damage) -> bool:
        """Check one item of the scan, in file order. False: nothing after it can be checked."""
        rep = self.rep
        if isinstance(item, Damage):
            e = item.error
            where = f"; resumed at byte {item.resumed_at}" if item.resumed_at is not None else ""
            rep.add(e.kind, e.message + where, offset=item.offset)
            rep.damaged.append((item.offset, item.resumed_at))
            return True
        handler = getattr(self, "_on_" + item.header.type.name.lower())
        try:
            handler(item)
        except FormatError as exc:
            rep.add(exc.kind, exc.message, offset=exc.offset)
            if item.header.type is RecordType.HEADER and rep.header is None:
                return False  # without a header nothing else can be checked; don't list every record as unexpected
        return True

    def finish(self) -> None:
        """The checks that need the whole file (after the last step)."""
        self._finish()
        self._keep_signed_gaps()

    def _keep_signed_gaps(self) -> None:
        """Only gap records a valid signature covers are honest gaps; an unsigned one explains nothing."""
        rep = self.rep
        covered = {id(r) for r in rep.records[: rep.verified_count]}
        signed = {e.digest for e in rep.index} if self.index_trusted and rep.index else set()
        rep.gaps = [g for g, r in self.gap_records if id(r) in covered or r.digest in signed]

    def _unexpected(self, rec: RawRecord) -> None:
        self.rep.add(P.MALFORMED, f"unexpected {rec.header.type.name} record here", offset=rec.offset)

    def _on_header(self, rec: RawRecord) -> None:
        if self.state != "header":
            return self._unexpected(rec)
        rep = self.rep
        rep.header = SegmentHeader.decode(bytes(rec.body), rec.header.flags, rec.offset)
        rep.header_digest = header_digest(rec.data)
        rep.header_offset = rec.offset
        self.chain = chain_start(rep.header_digest)
        self.chains = [self.chain]
        self.state = "records" if rep.header.keys_detached else "keys"
        if self.pin is not None and rep.header.signer != self.pin:
            rep.add(P.WRONG_SIGNER, "segment is signed by a key other than the pinned hub key", offset=rec.offset)

    def _on_keys(self, rec: RawRecord) -> None:
        if self.state != "keys":
            return self._unexpected(rec)
        self.state = "records"
        if hashlib.sha256(rec.data).digest() != self.rep.header.keys_digest:
            self.rep.add(P.KEYS_MODIFIED, "recipient stanzas differ from those the header commits to",
                         offset=rec.offset)
        self.rep.stanzas = decode_keys_body(bytes(rec.body), rec.offset)

    def _on_chunk(self, rec: RawRecord) -> None:
        head = ChunkHead.decode(rec.body, rec.offset)
        self._chained(rec, head.index, head.capture_us, head.camera_handle, head.segment_id)

    def _on_gap(self, rec: RawRecord) -> None:
        gap = Gap.decode(bytes(rec.body), rec.offset)
        if self._chained(rec, gap.index, gap.from_us, gap.camera_handle, gap.segment_id):
            self.rep.gaps.append(gap)
            self.gap_records.append((gap, self.rep.records[-1]))

    def _chained(self, rec: RawRecord, index: int, t: int, handle: bytes, seg_id: bytes) -> bool:
        rep = self.rep
        if self.state != "records":
            self._unexpected(rec)
            return False
        digest = hashlib.sha256(rec.data).digest()
        if self.final_seen_at is not None:
            rep.add(P.MALFORMED, "record after the final chunk", offset=rec.offset, index=index)
        if rec.header.flags & RecordFlag.FINAL:
            self.final_seen_at = rec.offset
        info = RecordInfo(rec.header.type, rec.header.flags, index, t, rec.offset, rec.header.total, digest,
                          handle, seg_id)
        rep.records.append(info)
        self.chain = chain_next(self.chain, digest)
        self.chains.append(self.chain)
        hdr = rep.header
        if handle != hdr.camera_handle:
            rep.add(P.SPLICED_CAMERA, "record belongs to another camera", offset=rec.offset, index=index)
        elif seg_id != hdr.segment_id:
            rep.add(P.SPLICED_SEGMENT, "record belongs to another segment of this camera",
                    offset=rec.offset, index=index)
        return True

    def _on_checkpoint(self, rec: RawRecord) -> None:
        if self.state != "records":
            return self._unexpected(rec)
        ck = Checkpoint.decode(bytes(rec.body), rec.offset)
        rep = self.rep
        signer = self.pin or rep.header.signer
        msg = checkpoint_message(rep.header_digest, ck.count, ck.chain)
        if ck.count >= len(self.chains) or not verify_signature(signer, ck.signature, msg):
            self.checkpoint_problem = self.checkpoint_problem or (
                P.BAD_SIGNATURE, "checkpoint signature does not verify", rec.offset)
        elif self.chains[ck.count] != ck.chain:
            self.checkpoint_problem = self.checkpoint_problem or (
                P.MODIFIED, "records before this checkpoint differ from what was signed", rec.offset)
        else:
            rep.verified_count = max(rep.verified_count, ck.count)

    def _on_index(self, rec: RawRecord) -> None:
        if self.state != "records":
            return self._unexpected(rec)
        self.state = "index"
        self.index_raw = rec
        self.rep.index = decode_index_body(bytes(rec.body), rec.offset)

    def _on_trailer(self, rec: RawRecord) -> None:
        if self.state != "index":
            return self._unexpected(rec)
        self.state = "end"
        self.rep.trailer = Trailer.decode(bytes(rec.body), rec.offset)
        self.trailer_offset = rec.offset

    # -- the checks that need the whole file ------------------------------------------------------------

    def _finish(self) -> None:
        rep = self.rep
        if rep.header is None:
            if not rep.problems:
                rep.add(P.MALFORMED, "no HEADER record", offset=len(MAGIC))
            return
        _check_times(rep)
        if rep.trailer is None:
            return self._unclosed()
        t = rep.trailer
        msg = segment_message(t.signed_fields())
        signer = self.pin or rep.header.signer
        if not verify_signature(signer, t.signature, msg):
            if not any(p.kind == P.WRONG_SIGNER for p in rep.problems):
                rep.add(P.BAD_SIGNATURE, "segment signature does not verify", offset=self.trailer_offset)
            return self._reconcile_clear_indexes()
        header_ok = t.header_digest == rep.header_digest
        if not header_ok:
            rep.add(P.HEADER_MODIFIED, "header differs from the signed header", offset=rep.header_offset)
        if self.index_raw is None or hashlib.sha256(self.index_raw.data).digest() != t.index_digest:
            rep.add(P.INDEX_MODIFIED, "index differs from the signed index",
                    offset=self.index_raw.offset if self.index_raw else None)
            return self._reconcile_clear_indexes()
        rep.signer_ok = self.pin is None or rep.header.signer == self.pin
        if rep.index is None:  # signed, yet undecodable: already reported as malformed
            return
        self.index_trusted = True
        if not header_ok:
            _forget_false_splices(rep, rep.index)
        exact = _reconcile(rep, rep.index)
        # the chain starts from the header digest, so a modified header alone changes it: nothing more to say
        if exact and header_ok and self.chain != t.chain:
            rep.add(P.MODIFIED, "hash chain differs from the signed chain", offset=self.trailer_offset)
        if exact:
            _check_offsets(rep, self.index_raw.offset)
        if not rep.problems:
            rep.digest = segment_digest(t.signed_fields())
            rep.verified_count = t.count
        self._check_final()

    def _unclosed(self) -> None:
        rep = self.rep
        if self.checkpoint_problem:  # with a valid trailer these are redundant, so only reported here
            kind, msg, off = self.checkpoint_problem
            rep.add(kind, msg, offset=off)
        if self.final_seen_at is None:
            if not any(p.kind == P.TRUNCATED for p in rep.problems):
                rep.add(P.MISSING_FINAL, "segment has no final chunk: it was cut at a record boundary or never "
                        "closed", offset=rep.size)
        else:
            rep.add(P.MISSING_TRAILER, "segment has its final chunk but no signed trailer", offset=rep.size)
        self._reconcile_clear_indexes()
        if rep.verified_count < len(rep.records):
            first = rep.records[rep.verified_count]
            rep.add(P.UNVERIFIED, f"{len(rep.records) - rep.verified_count} record(s) from here on are not "
                    "covered by any signature", offset=first.offset, index=first.index)

    def _check_final(self) -> None:
        rep = self.rep
        last = rep.records[-1] if rep.records else None
        if last is None or last.type is not RecordType.CHUNK or not last.flags & RecordFlag.FINAL:
            rep.add(P.MISSING_FINAL, "last record is not a final chunk", offset=self.trailer_offset)

    def _reconcile_clear_indexes(self) -> None:
        """Without a trusted index: order problems from the indexes written in each record's clear part."""
        seen: set[int] = set()
        expect = 0
        for r in self.rep.records:
            if r.index in seen:
                self.rep.add(P.DUPLICATED, "record index appears twice", offset=r.offset, index=r.index)
            elif r.index < expect:
                self.rep.add(P.REORDERED, "record is out of order", offset=r.offset, index=r.index)
            elif r.index > expect:
                self.rep.add(P.DROPPED, f"record(s) {expect}..{r.index - 1} missing", offset=r.offset,
                             index=expect)
            seen.add(r.index)
            expect = max(expect, r.index + 1)


def _check_times(rep: SegmentReport) -> None:
    """Capture times must not go backwards along the segment's own chunks in index order. A record of another
    segment, or one whose index does not advance (reordered, duplicated), is named as such, not as re-timed."""
    last, last_index = None, -1
    own = (rep.header.camera_handle, rep.header.segment_id)
    for r in rep.records:
        if r.type is not RecordType.CHUNK or r.index <= last_index or (r.camera_handle, r.segment_id) != own:
            continue
        if last is not None and r.time_us < last:
            rep.add(P.RETIMED, "capture time goes backwards", offset=r.offset, index=r.index)
        last = r.time_us if last is None else max(last, r.time_us)
        last_index = r.index


def _forget_false_splices(rep: SegmentReport, index: list[IndexEntry]) -> None:
    """With a modified header, records were compared against a wrong camera handle or segment id: those that
    match the signed index are genuine, not spliced."""
    signed = {e.digest for e in index}
    genuine = {r.offset for r in rep.records if r.digest in signed}
    rep.problems = [p for p in rep.problems
                    if not (p.kind in (P.SPLICED_CAMERA, P.SPLICED_SEGMENT) and p.offset in genuine)]


def _check_offsets(rep: SegmentReport, index_offset: int) -> None:
    """With every signed record present and in order: are they where the signed index puts them?

    Bytes inserted or removed between signed records (a checkpoint dropped or repeated) shift them; the
    decryptor seeks by the signed offsets, so such a file would verify but not decrypt."""
    for r, e in zip(rep.records, rep.index, strict=False):
        if r.offset != e.offset:
            rep.add(P.MODIFIED, f"record found at byte {r.offset}, the signed index places it at byte {e.offset} "
                    "(bytes inserted or removed before it)", offset=r.offset, index=r.index)
            return
    if rep.trailer.index_offset != index_offset:
        rep.add(P.MODIFIED, f"INDEX found at byte {index_offset}, the signed trailer places it at byte "
                f"{rep.trailer.index_offset} (bytes inserted or removed before it)", offset=index_offset)


def _reconcile(rep: SegmentReport, index: list[IndexEntry]) -> bool:
    """Match the records found against the signed index; name every difference. True when they are exactly
    the indexed records, each once, in order."""
    by_digest = {e.digest: i for i, e in enumerate(index)}
    matched: set[int] = set()
    claimed: set[int] = set()
    high = -1
    for r in rep.records:
        j = by_digest.get(r.digest)
        if j is None:
            claimed.add(r.index)
            e = index[r.index] if 0 <= r.index < len(index) else None
            if r.camera_handle != rep.header.camera_handle or r.segment_id != rep.header.segment_id:
                continue  # already named as spliced
            if e is not None and e.time_us != r.time_us:
                rep.add(P.RETIMED, f"time {r.time_us} differs from the signed time {e.time_us}",
                        offset=r.offset, index=r.index)
            else:
                rep.add(P.MODIFIED, "record bytes differ from the signed digest", offset=r.offset, index=r.index)
            continue
        if j in matched:
            rep.add(P.DUPLICATED, "record appears more than once", offset=r.offset, index=j)
            continue
        if j < high:
            rep.add(P.REORDERED, f"record {j} appears after record {high}", offset=r.offset, index=j)
        matched.add(j)
        high = max(high, j)
    exact = [by_digest.get(r.digest) for r in rep.records] == list(range(len(index)))
    for j, e in enumerate(index):
        if j not in matched and j not in claimed:
            if any(start <= e.offset < (rep.size if end is None else end) for start, end in rep.damaged):
                continue  # its bytes are there but damaged, and named where the reader found the damage
            rep.add(P.DROPPED, "signed record is missing", offset=e.offset, index=j)
    return exact
