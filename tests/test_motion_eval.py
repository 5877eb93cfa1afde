"""Event-level evaluation on generated clips with known ground truth (scripts/make_motion_clips.py).

Motion clips: event-level F1 >= 0.9 (an event matches a ground-truth interval it overlaps, one to one); the clips
made for the detector's former weak spots (objects filling most of the view, colour-only objects, a person
standing right at the lens) must each find exactly their events. Static, noise, lighting-only (ramp, light
switch, day/night IR switch) and shake clips: no event at all. Tamper clips: the tamper label is reported
overlapping its interval; no tamper anywhere else (a person standing right in front of the lens is not a move).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("cv2")
from sealcam.config.motion import MotionSettings  # noqa: E402
from sealcam.motion.scan import ScanEvent, scan_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def _clips_module():
    spec = importlib.util.spec_from_file_location("make_motion_clips", ROOT / "scripts" / "make_motion_clips.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, list[ScanEvent]]]:
    out = tmp_path_factory.mktemp("clips")
    clips = _clips_module().make(out, (320, 180), 10)
    settings = MotionSettings(detect_width=320)
    res = {}
    for mp4 in clips:
        truth = json.loads(mp4.with_suffix(".json").read_text())
        res[mp4.stem] = (truth, scan_file(mp4, settings).events)
    return res


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def match(truth: list[list[float]], found: list[tuple[float, float]]) -> int:
    """Greedy one-to-one matching by overlap; the number of true positives."""
    used: set[int] = set()
    tp = 0
    for t in truth:
        for i, f in enumerate(found):
            if i not in used and overlaps((t[0], t[1]), f):
                used.add(i)
                tp += 1
                break
    return tp


def test_the_clip_set_covers_every_case(results: dict) -> None:
    kinds = {t["kind"] for t, _ in results.values()}
    assert kinds == {"motion", "none", "tamper"} and len(results) >= 16


def motion_events(truth: dict, events: list[ScanEvent]) -> list[tuple[float, float]]:
    return [(e.start_s, e.end_s if e.end_s is not None else truth["seconds"]) for e in events
            if e.kind in ("motion", "object")]


def test_motion_clips_event_f1(results: dict) -> None:
    tp = n_truth = n_found = 0
    report = []
    for name, (truth, events) in results.items():
        if truth["kind"] != "motion":
            continue
        found = motion_events(truth, events)
        k = match(truth["events"], found)
        tp, n_truth, n_found = tp + k, n_truth + len(truth["events"]), n_found + len(found)
        report.append(f"{name}: truth {truth['events']} found {found}")
    precision, recall = tp / max(1, n_found), tp / max(1, n_truth)
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    assert n_truth >= 8
    assert f1 >= 0.9, "\n".join([f"F1 {f1:.2f} (P {precision:.2f} R {recall:.2f})", *report])


@pytest.mark.parametrize("name", ["close_pass", "colour_only", "person_at_lens"])
def test_each_event_found_once(results: dict, name: str) -> None:
    """A person right past the lens and a truck (each > lighting_fraction of the frame), objects differing from
    the road in colour only, a person standing at the lens: one event per object, nothing else."""
    truth, events = results[name]
    found = motion_events(truth, events)
    assert len(found) == len(truth["events"]) == match(truth["events"], found), (truth["events"], found)
    for (t0, t1), (f0, f1) in zip(truth["events"], found, strict=True):  # each covers most of its object's time
        assert min(t1, f1) - max(t0, f0) >= 0.8 * (t1 - t0), (truth["events"], found)


@pytest.mark.parametrize("name", ["static", "noise_only", "lighting_ramp", "light_switch", "ir_switch", "shake"])
def test_no_events_without_motion(results: dict, name: str) -> None:
    truth, events = results[name]
    assert truth["kind"] == "none"
    assert [(e.kind, e.label, e.start_s, e.end_s) for e in events] == []


@pytest.mark.parametrize("name", ["covered", "moved"])
def test_tamper_is_reported(results: dict, name: str) -> None:
    truth, events = results[name]
    (start, end, label), = truth["tamper"]
    hits = [e for e in events if e.kind == "tamper" and e.label == label
            and overlaps((start, end), (e.start_s, e.end_s if e.end_s is not None else truth["seconds"]))]
    assert hits, [(e.kind, e.label, e.start_s, e.end_s) for e in events]
    assert all(e.label == label for e in events if e.kind == "tamper")  # no other tamper label invented
    assert hits[0].thumbnail_bytes > 0


def test_tamper_is_not_reported_on_plain_scenes(results: dict) -> None:
    """Includes a person standing 7 s right in front of the lens and the day/night switch (not moved)."""
    assert "person_at_lens" in results and "ir_switch" in results
    wrong = {n: [e.label for e in ev if e.kind == "tamper"] for n, (t, ev) in results.items() if t["kind"] != "tamper"}
    assert not any(wrong.values()), wrong
