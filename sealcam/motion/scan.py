"""Run the motion pipeline over a video file (`sealcam motion scan`, the evaluation tests, the bench).

Same decoder command, detector, tamper monitor and event machine as the service; times are seconds from the
file's start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealcam.bus.contract import MotionEvent, Thumbnail

from .decode import decode_file
from .events import Message
from .pipeline import CameraPipeline, load_object_detector

US = 1_000_000


@dataclass
class ScanEvent:
    event_id: str
    kind: str
    label: str
    score: int  # per mille
    start_s: float
    end_s: float | None = None
    labels: dict[str, float] = field(default_factory=dict)
    thumbnail_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "score": self.score / 1000, "start": round(self.start_s, 2),
                "end": None if self.end_s is None else round(self.end_s, 2), "labels": self.labels,
                "thumbnail_bytes": self.thumbnail_bytes}


@dataclass
class ScanResult:
    events: list[ScanEvent]
    frames: int
    seconds: float


def scan_file(path: str | Path, settings: Any, objects_cfg: Any = None, camera: str = "scan",
              on_message: Callable[[Message], None] | None = None) -> ScanResult:
    import json

    pipe = CameraPipeline(camera, settings, objects=load_object_detector(objects_cfg))
    events: dict[str, ScanEvent] = {}
    last = 0.0

    def take(msgs: list[Message]) -> None:
        for m in msgs:
            if on_message is not None:
                on_message(m)
            if isinstance(m, Thumbnail):
                if m.event_id in events:
                    events[m.event_id].thumbnail_bytes = len(m.data)
                continue
            assert isinstance(m, MotionEvent)
            ev = events.setdefault(m.event_id, ScanEvent(m.event_id, m.kind, m.label, m.score, m.start_us / US))
            ev.label, ev.score = m.label, m.score
            ev.labels = json.loads(m.detail).get("labels", {}) or ev.labels
            if m.phase == "end":
                ev.end_s = m.end_us / US

    for frame in decode_file(path, settings.detect_fps, settings.detect_width, settings.detect_height):
        last = frame.media_s
        take(pipe.process(frame))
    take(pipe.finish())
    return ScanResult(sorted(events.values(), key=lambda e: e.start_s), pipe.counters["frames"], last)
