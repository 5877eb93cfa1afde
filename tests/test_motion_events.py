"""The event state machine (pure; times come with the frames) and thumbnails."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from sealcam.bus.contract import MotionEvent, Thumbnail  # noqa: E402
from sealcam.motion.detector import MotionResult  # noqa: E402
from sealcam.motion.events import KEEPALIVE_S, EventMachine, EventParams, clean_label  # noqa: E402
from sealcam.motion.tamper import Transition  # noqa: E402
from sealcam.motion.thumbs import encode_jpeg  # noqa: E402

US = 1_000_000
FPS = 5
MOTION = MotionResult(True, 0.05, ((0.1, 0.2, 0.3, 0.6),), 0.03)
STILL = MotionResult(False)


@dataclass(frozen=True)
class Det:
    label: str
    score: float
    box: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.4)


def ids():
    counter = itertools.count()
    return lambda: f"{next(counter):032x}"


def image(v: int = 100) -> np.ndarray:
    img = np.full((90, 160, 3), v, np.uint8)
    img[20:60, 30:70] = 255 - v
    return img


class Driver:
    def __init__(self, **params: object) -> None:
        self.m = EventMachine("cam1", EventParams(**params), new_id=ids(), object_detection=True)
        self.t = 0.0
        self.out: list = []

    def frames(self, result: MotionResult, seconds: float, img: np.ndarray | None = None, dets=None) -> None:
        for _ in range(round(seconds * FPS)):
            self.out += self.m.step(round(self.t * US), result, img if img is not None else image(), dets)
            self.t += 1 / FPS

    def events(self) -> list[tuple[str, str]]:
        return [(m.phase, m.event_id[-1]) for m in self.out if isinstance(m, MotionEvent)]


def test_start_and_end_times() -> None:
    d = Driver(min_frames=2, min_seconds=0.3, end_seconds=2.0)
    d.frames(STILL, 1.0)
    d.frames(MOTION, 3.0)
    d.frames(STILL, 3.0)
    evs = [m for m in d.out if isinstance(m, MotionEvent)]
    assert [e.phase for e in evs] == ["start", "end"]
    start, end = evs
    assert start.start_us == 1 * US and start.at_us == round(1.4 * US)  # 3 frames span 0.4 s >= 0.3
    assert end.end_us == round(3.8 * US)  # the last frame with motion
    assert start.kind == "motion" and start.label == "motion" and start.score == 50  # 5% of the frame
    detail = json.loads(end.detail)
    assert detail["boxes"][0][:4] == [0.1, 0.2, 0.3, 0.6] and detail["area"] == 0.05
    thumbs = [m for m in d.out if isinstance(m, Thumbnail)]
    assert len(thumbs) == 1 and thumbs[0].event_id == start.event_id
    assert cv2.imdecode(np.frombuffer(thumbs[0].data, np.uint8), cv2.IMREAD_COLOR).shape == (90, 160, 3)


def test_a_blip_is_not_an_event() -> None:
    d = Driver(min_frames=2)
    for _ in range(10):
        d.frames(MOTION, 0.2)
        d.frames(STILL, 0.2)
    assert d.out == []


def test_gaps_shorter_than_end_seconds_keep_one_event() -> None:
    d = Driver(end_seconds=3.0)
    for _ in range(4):
        d.frames(MOTION, 1.0)
        d.frames(STILL, 2.0)
    d.frames(STILL, 2.0)
    assert [p for p, _ in d.events()] == ["start", "end"]


def test_max_length_cuts_and_starts_the_next_event() -> None:
    d = Driver(max_event_seconds=10, end_seconds=1.0, update_seconds=100)
    d.frames(MOTION, 25.0)
    d.frames(STILL, 2.0)
    assert d.events() == [("start", "0"), ("end", "0"), ("start", "1"), ("end", "1"), ("start", "2"), ("end", "2")]
    evs = [m for m in d.out if isinstance(m, MotionEvent)]
    assert evs[1].end_us == evs[2].start_us == 10 * US  # contiguous
    assert sum(isinstance(m, Thumbnail) for m in d.out) == 3


def test_updates_when_labels_change_rate_limited() -> None:
    d = Driver(update_seconds=2.0, end_seconds=1.0)
    d.frames(MOTION, 1.0, dets=[Det("person", 0.5)])
    d.frames(MOTION, 0.4, dets=[Det("person", 0.6)])
    d.frames(MOTION, 0.4, dets=[Det("Person!", 0.7), Det("car", 0.9)])  # changed, but < 2 s after the start
    d.frames(MOTION, 2.0)
    d.frames(STILL, 1.2)
    evs = [m for m in d.out if isinstance(m, MotionEvent)]
    assert [e.phase for e in evs] == ["start", "update", "end"]
    assert evs[0].kind == evs[2].kind == "object" and evs[0].label == "person" and evs[0].score == 500
    assert evs[1].label == "car" and evs[1].score == 900 and evs[1].at_us - evs[0].at_us >= 2 * US
    assert json.loads(evs[2].detail)["labels"] == {"car": 0.9, "person": 0.7}


def test_a_steady_event_is_kept_alive_for_a_restarted_crypto() -> None:
    """Nothing changes for 35 s: an update still goes out every KEEPALIVE_S (a crypto that restarted mid-event
    learns of it from the next message), even with update_seconds longer than that."""
    d = Driver(update_seconds=60.0, end_seconds=1.0)
    d.frames(MOTION, 35.0)
    d.frames(STILL, 1.2)
    evs = [m for m in d.out if isinstance(m, MotionEvent)]
    assert [e.phase for e in evs] == ["start", "update", "update", "update", "end"]
    times = [e.at_us for e in evs[:4]]
    assert all(round(b - a) == KEEPALIVE_S * US for a, b in zip(times, times[1:], strict=False))


def test_thumbnail_is_the_best_frame() -> None:
    d = Driver(end_seconds=1.0)
    d.frames(MOTION, 1.0, img=image(10))
    d.frames(MOTION, 0.2, img=image(200), dets=[Det("person", 0.8)])  # the best: a detection
    d.frames(MotionResult(True, 0.4, ((0, 0, 1, 1),)), 1.0, img=image(60))  # bigger, but no detection
    d.frames(STILL, 1.2)
    thumb, = [m for m in d.out if isinstance(m, Thumbnail)]
    assert thumb.at_us == 1 * US
    px = cv2.imdecode(np.frombuffer(thumb.data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert abs(int(px[5, 5]) - 200) < 10


def test_thumbnail_sent_once_settled_before_the_end() -> None:
    d = Driver(end_seconds=2.0)
    d.frames(MotionResult(True, 0.2), 0.4)
    d.frames(MOTION, 6.0)
    assert [type(m).__name__ for m in d.out] == ["MotionEvent", "Thumbnail"]
    d.frames(STILL, 3.0)
    assert sum(isinstance(m, Thumbnail) for m in d.out) == 1


def test_detection_cadence() -> None:
    m = EventMachine("cam1", EventParams(detect_every=3), object_detection=True, new_id=ids())
    asked = []
    for i in range(12):
        r = MOTION if i != 5 else STILL
        want = m.wants_detection(r)
        asked.append(want)
        m.step(i * US // FPS, r, image(), [] if want else None)
    assert asked == [True, False, False, True, False, False, True, False, False, True, False, False]
    off = EventMachine("cam1", EventParams(), object_detection=False)
    assert not off.wants_detection(MOTION)


def test_finish_ends_what_is_open() -> None:
    d = Driver()
    d.frames(MOTION, 2.0)
    d.out += d.m.tamper([Transition("covered", "start", 2 * US, US)], image())
    d.out += d.m.finish(round(d.t * US))
    evs = [m for m in d.out if isinstance(m, MotionEvent)]
    assert sorted((e.kind, e.phase) for e in evs) == [("motion", "end"), ("motion", "start"), ("tamper", "end"),
                                                      ("tamper", "start")]
    assert d.m.finish(10 * US) == []


def test_tamper_events() -> None:
    m = EventMachine("cam1", EventParams(), new_id=ids())
    out = m.tamper([Transition("moved", "start", 5 * US, 2 * US)], image())
    start, thumb = out
    assert start.kind == "tamper" and start.label == "moved" and start.start_us == 2 * US and start.at_us == 5 * US
    assert isinstance(thumb, Thumbnail) and thumb.event_id == start.event_id
    end, = m.tamper([Transition("moved", "end", 9 * US, 8 * US)], None)
    assert end.phase == "end" and end.end_us == 8 * US and end.event_id == start.event_id
    assert m.tamper([Transition("moved", "end", 10 * US, 8 * US)], None) == []  # nothing open


def test_clean_label() -> None:
    assert clean_label("Traffic Light") == "traffic light"
    assert clean_label("ä/ö") == "object"
    assert clean_label("x" * 50) == "x" * 32
    assert clean_label("") == "object"


def test_jpeg_fits_the_limit() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)  # incompressible
    data = encode_jpeg(noise, max_bytes=200_000)
    assert data[:2] == b"\xff\xd8" and len(data) <= 200_000
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[1] <= 1280
