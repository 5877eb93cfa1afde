"""Cases about the chain of one camera's segments: replays, forks, missing segments, forged gaps."""

from __future__ import annotations

import shutil

from sealcam.format.constants import GapReason, RecordType
from sealcam.format.records import Gap, encode_record

from .kit import SEC, SEGMENT_SPAN, T0, ZERO_LINK, Case, Seg, data_chunks, expect, forced, span, stream, write_segment
from .kit import case as vector

N = 6


def _chain(c: Case, n: int) -> list[Seg]:
    """n closed segments (seq 0..n-1) of one camera, each linked to the previous, in files 0..n-1."""
    segs: list[Seg] = []
    prev = ZERO_LINK
    for seq in range(n):
        seg = write_segment(c.kit, c.file(seq), data_chunks(f"{c.name}/{seq}", N, T0 + seq * SEGMENT_SPAN),
                            seq=seq, prev=prev)
        prev = seg.digest
        segs.append(seg)
    return segs


def _plain(segs: list[Seg]) -> bytes:
    return b"".join(stream(s.ops) for s in segs)


def _refused(c: Case, segs: list[Seg], problems: tuple[str, ...], **force) -> None:  # noqa: ANN003
    c.done([s.path for s in segs], expect(problems=problems, decrypt="refused",
                                          force=forced(N * len(segs), _plain(segs), **force)))


@vector
def replayed_segment(c: Case) -> None:
    """Chain of 3 closed segments plus a byte-identical copy of segment 1 presented as a 4th file."""
    segs = _chain(c, 3)
    shutil.copyfile(segs[1].path, c.file(3))
    _refused(c, [*segs, Seg(c.file(3), segs[1].ops, segs[1].entries, segs[1].sealed)], ("replayed",))


@vector
def missing_segment(c: Case) -> None:
    """Chain of 3 closed segments with the middle file (seq 1) deleted and no signed gap explaining it."""
    segs = _chain(c, 3)
    segs[1].path.unlink()
    _refused(c, [segs[0], segs[2]], ("missing-segment",))


@vector
def forked(c: Case) -> None:
    """Segments 0 and 1, plus a second, different, validly signed segment that also claims seq 1 and links
    to segment 0 (a cloned hub, or a replayed fork)."""
    segs = _chain(c, 2)
    fork = write_segment(c.kit, c.file(2), data_chunks(c.name + "/fork", N, T0 + SEGMENT_SPAN + 30 * SEC),
                         seq=1, prev=segs[0].digest)
    _refused(c, [*segs, fork], ("forked",))


@vector
def substituted_segment(c: Case) -> None:
    """Chain of 3 where segment 1 was replaced by another validly signed seq-1 segment (linking to segment
    0): segment 2's prev_link no longer matches the segment before it."""
    segs = _chain(c, 3)
    other = write_segment(c.kit, c.file(1), data_chunks(c.name + "/other", N, T0 + SEGMENT_SPAN), seq=1,
                          prev=segs[0].digest)
    _refused(c, [segs[0], other, segs[2]], ("chain-broken",))


@vector
def chain_skips_segment(c: Case) -> None:
    """Segments 0, 1, 2 all present, but segment 2 links to segment 0 (past 1) without a signed gap."""
    segs = _chain(c, 2)
    s2 = write_segment(c.kit, c.file(2), data_chunks(f"{c.name}/2", N, T0 + 2 * SEGMENT_SPAN), seq=2,
                       prev=segs[0].digest)
    _refused(c, [*segs, s2], ("chain-broken",))


@vector
def chain_restart_without_gap(c: Case) -> None:
    """Segment 1 starts a new chain (prev_link all zeros) and carries no signed gap record."""
    segs = _chain(c, 1)
    s1 = write_segment(c.kit, c.file(1), data_chunks(f"{c.name}/1", N, T0 + SEGMENT_SPAN), seq=1)
    _refused(c, [*segs, s1], ("chain-broken",))


@vector
def forged_gap(c: Case) -> None:
    """Chain of 3 with segment 1 deleted; to excuse the deletion, an unsigned GAP record (RESTART,
    lost_first_seq=1, lost_count=1, with segment 2's handle and id and a fresh index 6) was inserted before
    segment 2's chunk 0. No signature covers it, so it explains nothing: the missing segment is named and
    no honest gap is counted."""
    segs = _chain(c, 3)
    segs[1].path.unlink()
    s2 = segs[2]
    hdr = s2.sealed.header
    gap = Gap(hdr.camera_handle, hdr.segment_id, len(s2.entries), GapReason.RESTART, T0 + SEGMENT_SPAN,
              T0 + 2 * SEGMENT_SPAN, 1, 1, "restart")
    buf = s2.bytes()
    at = span(s2.entries[0]).start
    buf[at:at] = encode_record(RecordType.GAP, 0, gap.encode())
    s2.path.write_bytes(bytes(buf))
    _refused(c, [segs[0], s2], ("missing-segment", "modified"))
