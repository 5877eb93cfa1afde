"""From per-frame motion (and object detections, tamper transitions) to MotionEvent and Thumbnail messages.

Pure: every decision uses the frames' own times (`at_us`), never a clock, so a file, a test and the live
service behave the same.

- start: `min_frames` consecutive frames with motion spanning at least `min_seconds` (start_us: the first);
- update: the best label or score changed, at most every `update_seconds`; and, whatever `update_seconds`
  says, at least every KEEPALIVE_S
  while motion goes on, so a crypto that restarted mid-event learns of it (and keeps recording in events
  mode) within that time — its RAM pre-roll reaches back further than that;
- end: no motion for `end_seconds` (end_us: the last frame with motion), or the event reached
  `max_event_seconds` (motion that goes on starts the next event at once);
- one Thumbnail per event: its best frame (highest detection score, else largest moving area), sent when the
  best frame has not changed for THUMB_SETTLE_S, or at the end;
- an event's kind is fixed at its start: "object" if the object detector had labelled something by then,
  else "motion"; `label`/`score` carry the best label and score (per mille) so far; for motion alone the score
  is the largest moving area in per mille of the frame;
- tamper transitions (tamper.py) become events of kind "tamper" with their own ids, thumbnail at start.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sealcam.bus.contract import MotionEvent, Thumbnail

from .detector import MotionResult
from .tamper import Transition
from .thumbs import encode_jpeg

US = 1_000_000
THUMB_SETTLE_S = 5.0
#: Longest time between two messages of an event in progress (services/crypto/modes.py DETECTION_SLACK_US
#: is the matching margin of crypto's pre-roll ring).
KEEPALIVE_S = 10.0
MAX_DETAIL_BOXES = 16
_BAD_LABEL = re.compile(r"[^a-z0-9_ -]+")

Message = MotionEvent | Thumbnail


class DetectionLike(Protocol):
    label: str
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class EventParams:
    min_frames: int = 2
    min_seconds: float = 0.3
    end_seconds: float = 5.0
    max_event_seconds: float = 300.0
    update_seconds: float = 2.0
    detect_every: int = 5  # run the object detector on at most every Nth frame with motion

    @classmethod
    def from_settings(cls, s, detect_every: int = 5) -> EventParams:  # noqa: ANN001 - MotionSettings
        return cls(s.min_frames, s.min_seconds, s.end_seconds, s.max_event_seconds, s.update_seconds, detect_every)


def clean_label(label: str) -> str:
    """A detector's class name as a contract label (lower case, [a-z0-9_ -], at most 32 characters)."""
    s = _BAD_LABEL.sub("_", str(label).strip().lower()).strip(" -_")[:32] or "object"
    return s if s[0].isalnum() else "o" + s[:31]


def new_event_id() -> str:
    return secrets.token_hex(16)


@dataclass
class _Best:
    key: tuple[float, float] = (-1.0, -1.0)  # (best detection score, motion area)
    at_us: int = 0
    image: np.ndarray | None = field(default=None, repr=False)
    changed_us: int = 0


@dataclass
class _Event:
    id: str
    kind: str
    start_us: int
    last_motion_us: int
    labels: dict[str, float] = field(default_factory=dict)
    area: float = 0.0
    zones: set[str] = field(default_factory=set)
    boxes: list[list[Any]] = field(default_factory=list)
    best: _Best = field(default_factory=_Best)
    sent: tuple[str, int] = ("", -1)
    last_update_us: int = 0
    thumb_sent: bool = False

    def label_score(self) -> tuple[str, int]:
        if self.labels:
            label, score = max(self.labels.items(), key=lambda kv: (kv[1], kv[0]))
            return label, max(0, min(1000, round(score * 1000)))
        return "motion", max(0, min(1000, round(self.area * 1000)))

    def detail(self) -> str:
        d = {"labels": {k: round(v, 3) for k, v in sorted(self.labels.items())},
             "boxes": self.boxes[:MAX_DETAIL_BOXES], "zones": sorted(self.zones), "area": round(self.area, 4)}
        return json.dumps(d, separators=(",", ":"))


class EventMachine:
    """Motion and tamper events of one camera."""

    def __init__(self, camera: str, params: EventParams, *, object_detection: bool = False,
                 new_id: Callable[[], str] = new_event_id, encode: Callable[[np.ndarray], bytes] = encode_jpeg) -> None:
        self.camera, self.p = camera, params
        self.object_detection = object_detection
        self.new_id, self.encode = new_id, encode
        self.ev: _Event | None = None
        self.run_frames = 0
        self.run_start_us = 0
        self.run: _Event | None = None  # what the current run of motion frames saw before an event starts
        self.frames = 0
        self.last_detect_frame: int | None = None
        self.events = 0
        self.tamper_open: dict[str, tuple[str, int]] = {}  # label -> (event id, start_us)

    # -- object detection cadence -------------------------------------------------------------------------
    def wants_detection(self, result: MotionResult) -> bool:
        """Run the object detector on this frame? Only with motion, at most every `detect_every` frames."""
        if not self.object_detection or not result.motion:
            return False
        return self.last_detect_frame is None or self.frames - self.last_detect_frame >= self.p.detect_every

    # -- frames -------------------------------------------------------------------------------------------
    def step(self, at_us: int, result: MotionResult, image: np.ndarray | None,
             detections: Sequence[DetectionLike] | None = None) -> list[Message]:
        self.frames += 1
        if detections is not None:
            self.last_detect_frame = self.frames - 1
        out: list[Message] = []
        ev = self.ev
        if ev is not None and at_us - ev.start_us >= self.p.max_event_seconds * US:
            out += self._end(ev, at_us if result.motion else ev.last_motion_us)
            if result.motion:  # motion goes on: the next event starts at once
                self.ev = self._new_event(at_us)
                self._observe(self.ev, at_us, result, image, detections)
                out.append(self._message(self.ev, "start", at_us))
                self.ev.last_update_us, self.ev.sent = at_us, self.ev.label_score()
                self.events += 1
                return out
        if result.motion:
            if self.ev is not None:
                self._observe(self.ev, at_us, result, image, detections)
                out += self._maybe_update(self.ev, at_us)
            else:
                if self.run_frames == 0 or self.run is None:
                    self.run_start_us, self.run = at_us, self._new_event(at_us)
                self.run_frames += 1
                self._observe(self.run, at_us, result, image, detections)
                if self.run_frames >= self.p.min_frames and at_us - self.run_start_us >= self.p.min_seconds * US:
                    self.ev, self.run, self.run_frames = self.run, None, 0
                    self.ev.kind = "object" if self.ev.labels else "motion"
                    self.ev.last_update_us = at_us
                    out.append(self._message(self.ev, "start", at_us))
                    self.ev.sent = self.ev.label_score()
                    self.events += 1
        else:
            self.run_frames, self.run = 0, None
            if self.ev is not None and at_us - self.ev.last_motion_us >= self.p.end_seconds * US:
                out += self._end(self.ev, self.ev.last_motion_us)
        if self.ev is not None:
            out += self._maybe_thumb(self.ev, at_us)
        return out

    def finish(self, at_us: int) -> list[Message]:
        """End of input (stop, end of file): end what is open."""
        out: list[Message] = []
        if self.ev is not None:
            out += self._end(self.ev, self.ev.last_motion_us)
        for label, (eid, start) in list(self.tamper_open.items()):
            out.append(MotionEvent(self.camera, eid, "end", "tamper", max(at_us, start), start,
                                   max(at_us, start), label, 1000))
            del self.tamper_open[label]
        self.run_frames, self.run = 0, None
        return out

    # -- tamper -------------------------------------------------------------------------------------------
    def tamper(self, transitions: Sequence[Transition], image: np.ndarray | None) -> list[Message]:
        out: list[Message] = []
        for t in transitions:
            if t.phase == "start" and t.label not in self.tamper_open:
                eid = self.new_id()
                start = min(t.since_us, t.at_us)
                self.tamper_open[t.label] = (eid, start)
                self.events += 1
                out.append(MotionEvent(self.camera, eid, "start", "tamper", t.at_us, start, 0, t.label, 1000))
                if image is not None:
                    out.append(Thumbnail(self.camera, eid, t.at_us, self.encode(image)))
            elif t.phase == "end" and t.label in self.tamper_open:
                eid, start = self.tamper_open.pop(t.label)
                end = max(start, t.since_us)
                out.append(MotionEvent(self.camera, eid, "end", "tamper", max(end, t.at_us), start, end,
                                       t.label, 1000))
        return out

    # -- internals ----------------------------------------------------------------------------------------
    def _new_event(self, at_us: int) -> _Event:
        return _Event(self.new_id(), "motion", at_us, at_us)

    def _observe(self, ev: _Event, at_us: int, result: MotionResult, image: np.ndarray | None,
                 detections: Sequence[DetectionLike] | None) -> None:
        ev.last_motion_us = at_us
        ev.area = max(ev.area, result.area)
        ev.zones.update(result.zones)
        det_best = 0.0
        if detections:
            ev.boxes = []
            for d in sorted(detections, key=lambda d: -d.score)[:MAX_DETAIL_BOXES]:
                label, score = clean_label(d.label), float(min(1.0, max(0.0, d.score)))
                ev.labels[label] = max(ev.labels.get(label, 0.0), score)
                det_best = max(det_best, score)
                ev.boxes.append([*(round(float(v), 4) for v in d.box), label, round(score, 3)])
        elif not ev.labels:
            ev.boxes = [[*(round(float(v), 4) for v in b), "motion", round(result.area, 4)]
                        for b in result.boxes[:MAX_DETAIL_BOXES]]
        key = (det_best, result.area)
        if image is not None and not ev.thumb_sent and key > ev.best.key:
            ev.best = _Best(key, at_us, image.copy(), at_us)

    def _message(self, ev: _Event, phase: str, at_us: int, end_us: int = 0) -> MotionEvent:
        label, score = ev.label_score()
        return MotionEvent(self.camera, ev.id, phase, ev.kind, at_us, ev.start_us, end_us, label, score,  # type: ignore[arg-type]
                           ev.detail())

    def _maybe_update(self, ev: _Event, at_us: int) -> list[Message]:
        now = ev.label_score()
        since = at_us - ev.last_update_us
        changed = now != ev.sent and since >= self.p.update_seconds * US
        if not changed and since < KEEPALIVE_S * US:
            return []
        ev.sent, ev.last_update_us = now, at_us
        return [self._message(ev, "update", at_us)]

    def _maybe_thumb(self, ev: _Event, at_us: int) -> list[Message]:
        b = ev.best
        if ev.thumb_sent or b.image is None or at_us - b.changed_us < THUMB_SETTLE_S * US:
            return []
        return self._thumb(ev)

    def _thumb(self, ev: _Event) -> list[Message]:
        if ev.thumb_sent or ev.best.image is None:
            return []
        ev.thumb_sent = True
        data = self.encode(ev.best.image)
        ev.best.image = None  # one thumbnail per event; the frame is no longer needed
        return [Thumbnail(self.camera, ev.id, ev.best.at_us, data)]

    def _end(self, ev: _Event, end_us: int) -> list[Message]:
        end_us = max(end_us, ev.start_us)
        out: list[Message] = [*self._thumb(ev), self._message(ev, "end", end_us, end_us)]
        self.ev = None
        return out
