"""What a camera keeps, per recording mode. Pure: no I/O; all times are capture times (µs, UTC) from the messages.

- `continuous`: every fragment is sealed; events are sealed as EVENT records in the running segment.
- `events`: fragments are held in a RAM-only ring (`PreRoll`, never written anywhere) until an event starts;
  then the ring from the last key frame at or before `start - pre_roll` is sealed, and everything after it,
  until `end + post_roll` of the last event, or `start - pre_roll + max_event` of each event (the cap), whichever
  comes first. A capped event that goes on is ignored until it ends; a new event starts a new window.
  Between windows nothing is sealed; the next window's segment declares the time in between with a signed
  NOT_RECORDING gap (the sealer's job).
- `both`: continuous, plus `in_event` tells the sealer which segments overlap an event window (retention class).

The decisions are taken per fragment (`fragment()`) and per event message (`event()`); the sealer acts on them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

S = 1_000_000
#: How much more than the pre-roll the ring holds: motion reports an event some time after its first frame
#: (decoding, detection), and the pre-roll counts back from that first frame.
DETECTION_SLACK_US = 10 * S
MODES = ("continuous", "events", "both")


@dataclass(frozen=True, slots=True)
class ModeSettings:
    mode: str = "continuous"
    pre_roll_us: int = 5 * S
    post_roll_us: int = 10 * S
    max_event_us: int = 300 * S

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"recording mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if min(self.pre_roll_us, self.post_roll_us) < 0 or self.max_event_us <= 0:
            raise ValueError("pre/post roll must be >= 0 and the maximum event length > 0")

    @classmethod
    def from_recording(cls, rec) -> ModeSettings:  # noqa: ANN001 - sealcam.config.models.Recording
        return cls(rec.mode, rec.pre_roll_seconds * S, rec.post_roll_seconds * S, rec.max_event_seconds * S)


@dataclass(frozen=True, slots=True)
class FragmentDecision:
    keep: bool  # seal this fragment (else hold it in the pre-roll ring)
    stop: bool = False  # the recording window ended: close the open segment before holding this fragment
    in_event: bool = False  # the fragment lies in an event window (both/events: the segment's retention class)


@dataclass
class _Window:
    start_us: int  # first event's start minus the pre-roll
    bounds: dict[str, int] = field(default_factory=dict)  # event id -> last capture time it keeps
    active: set[str] = field(default_factory=set)  # events started, not ended, not capped

    @property
    def until_us(self) -> int:
        return max(self.bounds.values())


class Keeper:
    """One camera's recording-mode state machine."""

    def __init__(self, settings: ModeSettings) -> None:
        self.settings = settings
        self.window: _Window | None = None  # the event window open now (events and both modes)
        self.capped: set[str] = set()  # events that outlived max_event and are ignored until they end
        self.newest_us: int | None = None  # latest fragment capture time seen

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def recording(self) -> bool:
        """True when fragments are being sealed now."""
        return self.mode != "events" or self.window is not None

    def event(self, event_id: str, phase: str, start_us: int, at_us: int, end_us: int = 0) -> bool:
        """Account for one event message; True when it opens a recording window in events mode (the sealer then
        seals the pre-roll ring). Unknown ids (crypto restarted mid-event) count as a start."""
        s = self.settings
        if event_id in self.capped:
            if phase == "end":
                self.capped.discard(event_id)
            return False
        if self.mode == "continuous":
            return False
        opened = False
        w = self.window
        cap = start_us - s.pre_roll_us + s.max_event_us
        if w is not None and w.until_us < (self.newest_us or 0) and not w.active:
            w = self.window = None  # the window is over; the next fragment would have closed it
        if w is None or event_id not in w.bounds:
            if phase != "end" and self.newest_us is not None and cap < self.newest_us:
                self.capped.add(event_id)  # already older than its cap (e.g. a late update after a restart)
                return False
            if w is None:
                w = self.window = _Window(start_us - s.pre_roll_us)
                opened = True
            w.start_us = min(w.start_us, start_us - s.pre_roll_us)
            w.active.add(event_id)
            w.bounds[event_id] = cap
        if phase == "end":
            w.active.discard(event_id)
            w.bounds[event_id] = min(max(end_us, start_us) + s.post_roll_us, cap)
        return opened and self.mode == "events"

    def fragment(self, capture_us: int) -> FragmentDecision:
        """Decide about one media fragment (in capture order)."""
        self.newest_us = capture_us if self.newest_us is None else max(self.newest_us, capture_us)
        w = self.window
        if w is not None and capture_us > w.until_us:
            self.capped |= w.active  # still going, but past their cap: ignored until they end
            self.window = None
            return FragmentDecision(keep=self.mode != "events", stop=self.mode == "events")
        in_event = w is not None and capture_us >= w.start_us
        return FragmentDecision(keep=self.mode != "events" or w is not None, in_event=in_event)

    @property
    def ring_from_us(self) -> int | None:
        """Where the pre-roll starts for the window just opened (None: no window)."""
        return self.window.start_us if self.window is not None else None

    @property
    def ring_keep_us(self) -> int:
        """How far back (from the newest fragment) the RAM ring must reach."""
        return self.settings.pre_roll_us + DETECTION_SLACK_US


class _Timed(Protocol):
    capture_us: int
    keyframe: bool


T = TypeVar("T", bound=_Timed)


class PreRoll(Generic[T]):
    """RAM-only ring of the latest fragments, always starting at a key frame, reaching at least `keep_us` back
    from the newest one. Never written to disk (plaintext stays in RAM, as on the plain bus)."""

    def __init__(self, keep_us: int, max_items: int = 4096) -> None:
        self.keep_us = keep_us
        self.max_items = max_items
        self._items: deque[T] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def push(self, item: T) -> None:
        if not self._items and not item.keyframe:
            return  # nothing decodable starts here
        self._items.append(item)
        horizon = item.capture_us - self.keep_us
        # drop whole key-frame groups that end before the horizon: keep the last key frame at or before it
        while True:
            nxt = next((i for i, x in enumerate(self._items) if i > 0 and x.keyframe), None)
            if nxt is None:
                break
            if self._items[nxt].capture_us <= horizon or len(self._items) > self.max_items:
                for _ in range(nxt):
                    self._items.popleft()
            else:
                break

    def take_from(self, t_us: int) -> list[T]:
        """Empty the ring; return its fragments from the last key frame at or before `t_us` (from the first key
        frame when none is that old)."""
        items = list(self._items)
        self._items.clear()
        start = 0
        for i, x in enumerate(items):
            if x.keyframe and x.capture_us <= t_us:
                start = i
        return items[start:]

    def clear(self) -> None:
        self._items.clear()
