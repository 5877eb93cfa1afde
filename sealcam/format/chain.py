"""Verification across the segments of each camera: sequence, links, replays and honest gaps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import problems as P
from .constants import HASH_LEN, GapReason, RecordType
from .records import Gap
from .verify import RecordInfo, SegmentReport

#: Problems of an unfinished segment that a later signed gap record explains (an honest gap).
_EXPLAINABLE = {P.MISSING_FINAL, P.MISSING_TRAILER, P.UNVERIFIED, P.TRUNCATED}


@dataclass(slots=True)
class HonestGap:
    camera_handle: bytes
    gap: Gap
    declared_in: str  # file holding the signed gap record


@dataclass(slots=True)
class SetReport:
    segments: list[SegmentReport]
    problems: list[P.Problem] = field(default_factory=list)
    gaps: list[HonestGap] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_chains(reports: Iterable[SegmentReport]) -> SetReport:
    """Combine per-segment reports; add cross-segment problems; turn explained damage into gaps."""
    reports = list(reports)
    out = SetReport(reports)
    cams: dict[bytes, list[SegmentReport]] = defaultdict(list)
    for r in reports:
        if r.header is not None:
            cams[r.header.camera_handle].append(r)
    explained: set[tuple[bytes, int]] = set()
    for handle, segs in cams.items():
        for r in segs:
            for g in r.gaps:
                out.gaps.append(HonestGap(handle, g, r.path))
                explained.update((handle, s) for s in range(g.lost_first_seq, g.lost_first_seq + g.lost_count))
        out.problems.extend(_check_camera(segs, explained))
    for r in reports:
        key = (r.header.camera_handle, r.header.seq) if r.header else None
        for p in r.problems:
            if key in explained and p.kind in _EXPLAINABLE:
                continue
            out.problems.append(p)
    return out


@dataclass(slots=True)
class RestartPrefix:
    """The part of an unfinished segment that its last valid CHECKPOINT signs, recoverable after a restart."""

    chunks: list[RecordInfo]  # CHUNK records covered by the checkpoint, in order (may be empty)
    total_chunks: int  # CHUNK records found in the file
    declared_in: str  # the later segment whose signed RESTART gap declares this one unfinished


def restart_prefix(seg: SegmentReport, setrep: SetReport) -> RestartPrefix | None:
    """The checkpoint-signed prefix of `seg` when it may be decrypted without forcing, else None.

    All of: `seg` has no trailer and no problem but those of a writer that stopped mid-segment (missing
    final chunk or trailer, a cut last record, records after the last checkpoint); a signed RESTART gap in a
    later segment of the same camera and signer declares its seq lost; that later segment has no problem in
    `setrep` (it verifies, or its own damage is itself an honest gap)."""
    h = seg.header
    if h is None or seg.trailer is not None or not seg.problems or any(p.kind not in _EXPLAINABLE
                                                                        for p in seg.problems):
        return None
    failing = {p.file for p in setrep.problems}
    declared_in = next((r.path for r in setrep.segments
                        if r.header is not None and r is not seg and r.path not in failing
                        and r.header.camera_handle == h.camera_handle and r.header.signer == h.signer
                        and r.header.seq > h.seq
                        and any(g.reason is GapReason.RESTART and g.lost_first_seq <= h.seq < g.lost_first_seq
                                + g.lost_count for g in r.gaps)), None)
    if declared_in is None:
        return None
    chunks = [r for r in seg.records if r.type is RecordType.CHUNK]
    covered = [r for r in seg.records[: seg.verified_count] if r.type is RecordType.CHUNK]
    return RestartPrefix(covered, len(chunks), declared_in)


def _check_camera(segs: list[SegmentReport], explained: set[tuple[bytes, int]]) -> list[P.Problem]:
    probs: list[P.Problem] = []
    segs.sort(key=lambda r: (r.header.seq, r.header.created_us, r.path))
    by_id: dict[bytes, SegmentReport] = {}
    by_digest = {r.digest: r for r in segs if r.digest}
    prev: SegmentReport | None = None
    for r in segs:
        h = r.header
        first = by_id.get(h.segment_id)
        if first is not None:
            probs.append(P.Problem(P.REPLAYED, f"same segment as {first.path}", file=r.path, seq=h.seq))
            continue
        by_id[h.segment_id] = r
        if prev is not None and prev.header.seq == h.seq:
            probs.append(P.Problem(P.FORKED, f"a different segment {prev.path} has the same sequence number",
                                   file=r.path, seq=h.seq))
            continue
        if prev is not None:
            probs.extend(_check_link(prev, r, by_digest, explained))
        prev = r
    return probs


def _check_link(prev: SegmentReport, r: SegmentReport, by_digest: dict, explained: set) -> list[P.Problem]:
    h, ph = r.header, prev.header
    out: list[P.Problem] = []
    handle = h.camera_handle
    missing = [s for s in range(ph.seq + 1, h.seq) if (handle, s) not in explained]
    if missing:
        out.append(P.Problem(P.MISSING_SEGMENT, f"segment(s) {missing[0]}..{missing[-1]} missing and no signed gap "
                             "explains them", file=r.path, seq=h.seq))
    if h.created_us < ph.created_us:
        out.append(P.Problem(P.RETIMED, "segment is dated before the previous one", file=r.path, seq=h.seq))
    if h.prev_link == bytes(HASH_LEN):
        if not r.gaps:
            out.append(P.Problem(P.CHAIN_BROKEN, "segment restarts the chain without a signed gap record",
                                 file=r.path, seq=h.seq))
        return out
    target = by_digest.get(h.prev_link)
    if target is None:
        if prev.digest is not None and not missing and (handle, ph.seq) not in explained:
            out.append(P.Problem(P.CHAIN_BROKEN, f"does not link to the previous segment {prev.path}",
                                 file=r.path, seq=h.seq))
    elif target.header.seq >= h.seq:
        out.append(P.Problem(P.CHAIN_BROKEN, "links forward in the chain", file=r.path, seq=h.seq))
    elif target is not prev and not all((handle, s) in explained for s in range(target.header.seq + 1, h.seq)):
        out.append(P.Problem(P.CHAIN_BROKEN, f"links past segment(s) after {target.path} without a signed gap",
                             file=r.path, seq=h.seq))
    return out
