"""When a sealed segment ends, and which gaps the next one must declare. Pure: no I/O, clock injected.

A segment ends
- at the first keyframe media fragment whose capture time is >= segment start + segment_seconds;
- before any fragment that does not follow the previous one (seq jump: data was trimmed or lost upstream;
  seq going back or a new `init`: the recorder restarted; capture time going back: clock step);
- when the safety cap is reached: capture span >= max_seconds (no keyframe came), or the segment has been
  open for max_seconds of wall clock (feed stalled), see `tick()`.
A seq jump yields a DROPPED/STORAGE gap (time range, lost fragment numbers in the detail) for the next
segment. A feed lost ... back pair yields a FEED_LOST gap, written into the open segment, else the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sealcam.format.constants import GapReason


def wall_clock_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class PendingGap:
    reason: GapReason
    from_us: int
    until_us: int
    detail: str = ""
    lost_first_seq: int = 0  # *segment* numbers (container semantics); 0/0 for data lost within a stream
    lost_count: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    close_before: bool  # close the open segment before sealing this fragment
    reason: str = ""
    gap: PendingGap | None = None  # declare in the segment that receives this fragment


@dataclass
class Rotator:
    segment_seconds: float
    max_seconds: float | None = None  # default: 2 x segment_seconds + 10 s
    clock: Callable[[], int] = wall_clock_us
    start_us: int | None = field(default=None, init=False)  # capture time of the open segment's first fragment
    opened_clock_us: int | None = field(default=None, init=False)
    last_seq: int | None = field(default=None, init=False)
    last_capture_us: int | None = field(default=None, init=False)
    lost_at_us: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.segment_seconds <= 0:
            raise ValueError("segment_seconds must be > 0")
        if self.max_seconds is None:
            self.max_seconds = 2 * self.segment_seconds + 10
        self._seg_us = int(self.segment_seconds * 1_000_000)
        self._max_us = int(self.max_seconds * 1_000_000)

    @property
    def is_open(self) -> bool:
        return self.start_us is not None

    def fragment(self, seq: int, capture_us: int, keyframe: bool, kind: str) -> Plan:
        """Decide about one fragment, and account for it (the caller seals it right after)."""
        plan = self._decide(seq, capture_us, keyframe, kind)
        self.last_seq = seq
        if kind == "media":
            self.last_capture_us = capture_us
            if plan.close_before or self.start_us is None:
                self.start_us = capture_us
                self.opened_clock_us = self.clock()
        elif plan.close_before:
            self.closed()
        return plan

    def _decide(self, seq: int, capture_us: int, keyframe: bool, kind: str) -> Plan:
        gap = None
        reason = ""
        if self.last_seq is not None and seq != self.last_seq + 1:
            if seq > self.last_seq + 1:
                first, last = self.last_seq + 1, seq - 1
                since = self.last_capture_us if self.last_capture_us is not None else capture_us
                gap = PendingGap(GapReason.STORAGE, min(since, capture_us), capture_us,
                                 f"plain fragments {first}..{last} lost before sealing (trimmed or dropped)")
                reason = f"fragment seq jump {self.last_seq} -> {seq}"
            else:
                reason = f"fragment seq went back {self.last_seq} -> {seq} (recorder restarted)"
        if not self.is_open:
            return Plan(False, reason, gap)
        if reason:
            return Plan(True, reason, gap)
        if kind == "init":
            return Plan(True, "new init segment")
        if self.last_capture_us is not None and capture_us < self.last_capture_us:
            return Plan(True, "capture time went backwards")
        span = capture_us - self.start_us
        if keyframe and span >= self._seg_us:
            return Plan(True, "segment length reached")
        if span >= self._max_us:
            return Plan(True, "safety cap (no keyframe)")
        return Plan(False)

    def tick(self) -> bool:
        """True when the open segment has been open for max_seconds of wall clock: close it now."""
        return self.is_open and self.clock() - self.opened_clock_us >= self._max_us

    def closed(self) -> None:
        self.start_us = None
        self.opened_clock_us = None

    def opened(self, capture_us: int) -> None:
        """A segment was opened by something other than this rotator's own plan (a pre-roll flush, an event
        record): it starts at `capture_us`, now."""
        self.start_us = capture_us
        self.opened_clock_us = self.clock()

    def feed_lost(self, at_us: int) -> None:
        if self.lost_at_us is None:
            self.lost_at_us = at_us

    def feed_back(self, at_us: int, detail: str = "") -> PendingGap | None:
        if self.lost_at_us is None:
            return None
        since, self.lost_at_us = self.lost_at_us, None
        return PendingGap(GapReason.FEED_LOST, since, max(since, at_us), detail[:200])
