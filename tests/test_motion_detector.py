"""The pure motion detector, tamper monitor and motion config on synthetic numpy frames."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from pydantic import ValidationError  # noqa: E402

from sealcam.config.motion import MotionSettings, Polygon  # noqa: E402
from sealcam.motion.detector import MotionDetector, MotionParams, Region  # noqa: E402
from sealcam.motion.tamper import TamperMonitor, TamperParams, classify, correlation, matched_tiles  # noqa: E402

W, H = 320, 180
US = 1_000_000


def scene(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (H // 12, W // 12)).astype(np.float32)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


class Frames:
    def __init__(self, seed: int = 1, noise: float = 4.0) -> None:
        self.base, self.noise = scene(seed), noise
        self.rng = np.random.default_rng(seed + 100)

    def make(self, box: tuple[int, int, int, int] | None = None, gain: float = 1.0, offset: float = 0.0,
             value: float = 20.0) -> np.ndarray:
        f = self.base * gain + offset
        if box is not None:
            x, y, w, h = box
            f[y:y + h, x:x + w] = value
        f = f + self.rng.normal(0, self.noise, f.shape)
        return cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def warm(det: MotionDetector, fr: Frames, n: int = 10) -> None:
    for _ in range(n):
        assert not det.process(fr.make()).motion


def test_static_noisy_scene_has_no_motion() -> None:
    fr = Frames(noise=8.0)
    det = MotionDetector(MotionParams(), (W, H))
    results = [det.process(fr.make()) for _ in range(40)]
    assert not any(r.motion for r in results)
    assert max(r.changed for r in results) < 0.001


def test_a_moving_block_is_motion_with_its_box() -> None:
    fr = Frames()
    det = MotionDetector(MotionParams(), (W, H))
    warm(det, fr)
    r = det.process(fr.make((100, 60, 30, 50)))
    assert r.motion and not r.lighting
    x0, y0, x1, y1 = r.boxes[0]
    assert abs(x0 * W - 100) < 8 and abs(y0 * H - 60) < 8 and abs(x1 * W - 130) < 8 and abs(y1 * H - 110) < 8
    assert 0.015 < r.area < 0.06
    px = r.pixel_boxes(640, 360)[0]
    assert abs(px[0] - 200) < 16 and abs(px[3] - 220) < 16


def test_blobs_below_min_area_are_ignored() -> None:
    fr = Frames()
    det = MotionDetector(MotionParams(min_area=0.01), (W, H))
    warm(det, fr)
    assert not det.process(fr.make((100, 60, 12, 12))).motion  # 144 px < 1% of 57600
    assert det.process(fr.make((100, 60, 40, 40))).motion


def test_global_gain_and_offset_change_is_not_motion() -> None:
    fr = Frames()
    det = MotionDetector(MotionParams(), (W, H))
    warm(det, fr)
    for gain, off in ((1.3, 0), (0.7, 0), (1.0, 40), (0.8, -15)):
        r = det.process(fr.make(gain=gain, offset=off))
        assert not r.motion, (gain, off, r)
    # ... but a block during a lighting change still is
    r = det.process(fr.make((200, 40, 40, 60), gain=0.8, offset=-15, value=250))
    assert r.motion


def test_large_uneven_change_is_suppressed_and_relearnt() -> None:
    fr = Frames()
    det = MotionDetector(MotionParams(lighting_fraction=0.35), (W, H))
    warm(det, fr)
    f = fr.make().astype(np.int16)
    f[:, : W // 2] += 90  # half the frame lit by a new lamp
    r = det.process(np.clip(f, 0, 255).astype(np.uint8))
    assert r.lighting and not r.motion and r.changed > 0.35
    # the background was re-learnt: the lit scene is now quiet
    g = fr.make().astype(np.int16)
    g[:, : W // 2] += 90
    assert not det.process(np.clip(g, 0, 255).astype(np.uint8)).motion


def test_an_object_filling_half_the_frame_is_motion_not_lighting() -> None:
    """More than lighting_fraction changed, but the scene's texture is gone there: an object (a truck)."""
    fr = Frames()
    det = MotionDetector(MotionParams(lighting_fraction=0.35), (W, H))
    warm(det, fr)
    for value in (20.0, 230.0):  # a dark and a light object, each covering 60 % of the frame
        r = det.process(fr.make((0, 0, 192, H), value=value))
        assert r.motion and not r.lighting, r
        assert r.structure_kept is not None and r.structure_kept < 0.3
        assert r.area > 0.5 and r.boxes[0][2] == pytest.approx(0.6, abs=0.05)
    # it passes: the background under it was not learnt (no ghost), the view is quiet again
    assert not det.process(fr.make()).motion


def test_uneven_relighting_keeps_structure_and_is_not_motion() -> None:
    """Day/night switch: the illuminator lights the left of the view (gain 1.6) more than the right (0.6), less
    contrast, more noise: most of the frame changed, but its texture is in place."""
    fr = Frames()
    det = MotionDetector(MotionParams(), (W, H))
    warm(det, fr)
    spot = np.interp(np.arange(W), [0, W * 0.4, W * 0.6, W], [1.6, 1.6, 0.6, 0.6]).astype(np.float32)[None, :]
    rng = np.random.default_rng(3)
    lit = np.clip((fr.base * 0.7 + 30) * spot + rng.normal(0, 6, (H, W)), 0, 255).astype(np.uint8)
    r = det.process(cv2.cvtColor(lit, cv2.COLOR_GRAY2BGR))
    assert r.lighting and not r.motion and r.changed > 0.35 and r.structure_kept > 0.7, r


def colour_scene(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 190, (H // 12, W // 12, 3)).astype(np.float32)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


def same_grey(bgr: np.ndarray, other: tuple[float, float, float]) -> np.ndarray:
    """`other` colour (BGR) scaled to the grey level of each pixel of `bgr`."""
    grey = cv2.cvtColor(np.clip(bgr, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
    c = np.array(other, np.float32)
    return grey[:, :, None] * c / float(c @ np.array([0.114, 0.587, 0.299], np.float32))


def test_an_object_of_another_colour_but_the_same_grey_is_motion() -> None:
    base = colour_scene()
    rng = np.random.default_rng(4)

    def frame(box: bool) -> np.ndarray:
        f = base.copy()
        if box:
            f[60:120, 100:150] = same_grey(base[60:120, 100:150], (60, 150, 40))  # green, same grey level
        return np.clip(f + rng.normal(0, 3, f.shape), 0, 255).astype(np.uint8)

    for threshold, seen in ((12, True), (0, False)):  # chroma_threshold 0: grey only, not seen
        det = MotionDetector(MotionParams(chroma_threshold=threshold), (W, H))
        for _ in range(10):
            assert not det.process(frame(False)).motion
        r = det.process(frame(True))
        assert r.motion is seen, (threshold, r)
        if seen:
            x0, y0, x1, y1 = r.boxes[0]
            assert abs(x0 * W - 100) < 10 and abs(x1 * W - 150) < 10 and abs(y0 * H - 60) < 10


def test_colour_lost_or_dimmed_everywhere_is_not_motion() -> None:
    """Desaturation (a camera's night mode) and dimming scale the chroma alike: no motion."""
    base = colour_scene()
    rng = np.random.default_rng(5)
    det = MotionDetector(MotionParams(), (W, H))
    for _ in range(10):
        assert not det.process(np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)).motion
    grey = cv2.cvtColor(cv2.cvtColor(base.astype(np.uint8), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert not det.process(grey).motion
    det = MotionDetector(MotionParams(), (W, H))
    for _ in range(10):
        det.process(base.astype(np.uint8))
    assert not det.process(np.clip(base * 0.6, 0, 255).astype(np.uint8)).motion


def test_small_camera_shake_is_not_motion() -> None:
    fr = Frames()
    det = MotionDetector(MotionParams(), (W, H))
    warm(det, fr, 20)
    rng = np.random.default_rng(5)
    for _ in range(30):
        dx, dy = rng.uniform(-1, 1, 2)
        f = cv2.warpAffine(fr.make(), np.float32([[1, 0, dx], [0, 1, dy]]), (W, H), borderMode=cv2.BORDER_REFLECT)
        assert not det.process(f).motion


def test_masks_and_zones() -> None:
    fr = Frames()
    left = Region("left", ((0, 0), (0.5, 0), (0.5, 1), (0, 1)))
    masked = MotionDetector(MotionParams(masks=(left,)), (W, H))
    zoned = MotionDetector(MotionParams(zones=(left,)), (W, H))
    for det in (masked, zoned):
        warm(det, fr)
    block_left, block_right = (40, 60, 30, 40), (240, 60, 30, 40)
    assert not masked.process(fr.make(block_left)).motion
    assert masked.process(fr.make(block_right)).motion
    r = zoned.process(fr.make(block_left))
    assert r.motion and r.zones == ("left",)
    assert not zoned.process(fr.make(block_right)).motion


def test_frames_are_scaled_to_the_analysis_width() -> None:
    det = MotionDetector(MotionParams(analysis_width=160), (640, 360))
    assert det.size == (160, 90)
    big = cv2.resize(Frames().make(), (640, 360))
    assert det.prepare(big).shape == (90, 160)


# --- tamper --------------------------------------------------------------------------------------------------
def test_classify_covered_and_blinded() -> None:
    p = TamperParams()
    rng = np.random.default_rng(0)
    dark = np.clip(rng.normal(8, 2, (H, W)), 0, 255).astype(np.uint8)
    bright = np.clip(rng.normal(245, 3, (H, W)), 0, 255).astype(np.uint8)
    night = (scene() * 0.25).astype(np.uint8)  # dark but with structure: not covered
    assert classify(dark, p) == "covered"
    assert classify(bright, p) == "blinded"
    assert classify(np.full((H, W), 255, np.uint8), p) == "blinded"
    assert classify(night, p) is None and classify(scene().astype(np.uint8), p) is None


def test_correlation_ignores_gain_and_offset() -> None:
    a = scene().astype(np.float32)
    assert correlation(a, a * 1.5 + 20) == pytest.approx(1.0, abs=1e-5)
    assert correlation(a, scene(9).astype(np.float32)) < 0.5
    assert correlation(a, np.full_like(a, 3.0)) is None


def run_monitor(mon: TamperMonitor, frames: list[np.ndarray], fps: float = 5.0, t0: float = 0.0) -> list:
    out = []
    for i, f in enumerate(frames):
        out += mon.update(f, round((t0 + i / fps) * US))
    return out


def test_covered_lens_is_reported_after_seconds_and_ends() -> None:
    mon = TamperMonitor(TamperParams(seconds=2.0))
    view = scene().astype(np.uint8)
    dark = np.full((H, W), 6, np.uint8)
    tr = run_monitor(mon, [view] * 10 + [dark] * 20 + [view] * 10)
    assert [(t.label, t.phase) for t in tr] == [("covered", "start"), ("covered", "end")]
    start, end = tr
    assert start.since_us == 2 * US and start.at_us == 4 * US  # began at frame 10, held 2 s
    assert end.since_us == round(5.8 * US)


def test_short_cover_is_not_reported() -> None:
    mon = TamperMonitor(TamperParams(seconds=3.0))
    view, dark = scene().astype(np.uint8), np.full((H, W), 6, np.uint8)
    assert run_monitor(mon, [view] * 10 + [dark] * 10 + [view] * 10) == []


def test_moved_camera_is_reported_lighting_is_not() -> None:
    p = TamperParams(seconds=2.0, reference_seconds=2.0, moved_seconds=2.0)
    view = scene(1).astype(np.float32)
    other = scene(2).astype(np.float32)
    mon = TamperMonitor(p)
    ramp = [np.clip(view * (0.6 + 0.05 * i), 0, 255).astype(np.uint8) for i in range(20)]
    assert run_monitor(mon, ramp) == []
    mon = TamperMonitor(p)
    tr = run_monitor(mon, [view.astype(np.uint8)] * 15 + [other.astype(np.uint8)] * 40)
    assert [(t.label, t.phase) for t in tr] == [("moved", "start"), ("moved", "end")]
    assert tr[0].since_us >= 3 * US and tr[1].at_us > tr[0].at_us  # the new view became the reference


def test_moved_must_persist_moved_seconds() -> None:
    p = TamperParams(seconds=1.0, reference_seconds=2.0, moved_seconds=8.0)
    view, other = scene(1).astype(np.uint8), scene(2).astype(np.uint8)
    assert run_monitor(TamperMonitor(p), [view] * 15 + [other] * 35 + [view] * 20) == []  # 7 s: not yet
    tr = run_monitor(TamperMonitor(p), [view] * 15 + [other] * 50)
    assert [(t.label, t.phase) for t in tr] == [("moved", "start")]
    assert tr[0].at_us - tr[0].since_us >= 8 * US


def test_something_right_in_front_of_the_lens_is_not_moved() -> None:
    """A person standing at the lens hides 60 % of the view for 20 s: the correlation with the reference drops
    and the view is steady, but the rest of the reference's texture is in place."""
    p = TamperParams(seconds=1.0, reference_seconds=30.0, moved_seconds=2.0)
    view = scene(1).astype(np.uint8)
    person = view.copy()
    person[:, 40:232] = 70
    mon = TamperMonitor(p)
    assert run_monitor(mon, [view] * 15 + [person] * 100) == []
    assert mon.last_corr is not None and mon.last_corr < p.moved_correlation  # only the tile check kept it quiet
    assert run_monitor(mon, [view] * 10, t0=23) == []
    small = mon._small(person)
    assert matched_tiles(small, mon.ref) > 0.3
    assert matched_tiles(mon._small(scene(2).astype(np.uint8)), mon.ref) < 0.1


def test_busy_scene_is_not_moved() -> None:
    """Different views every frame (a crowd, a swinging branch in front): not steady, so not a move."""
    mon = TamperMonitor(TamperParams(seconds=1.0))
    views = [scene(1).astype(np.uint8)] * 10 + [scene(10 + i).astype(np.uint8) for i in range(30)]
    assert run_monitor(mon, views) == []


# --- config ----------------------------------------------------------------------------------------------------
def test_polygons_are_validated() -> None:
    assert Polygon(points=[(0, 0), (1, 0), (1, 1)]).fractions() == [(0, 0), (1, 0), (1, 1)]
    assert Polygon(points=[(0, 0), (640, 0), (640, 360)], size=(640, 360)).fractions()[1] == (1.0, 0.0)
    with pytest.raises(ValidationError, match="outside the frame"):
        Polygon(points=[(0, 0), (1.5, 0), (1, 1)])
    with pytest.raises(ValidationError, match="outside the frame"):
        Polygon(points=[(0, 0), (700, 0), (600, 300)], size=(640, 360))
    with pytest.raises(ValidationError, match="no area"):
        Polygon(points=[(0, 0), (0.5, 0.5), (1, 1)])
    with pytest.raises(ValidationError):
        Polygon(points=[(0, 0), (1, 0)])


def test_motion_settings_limits() -> None:
    with pytest.raises(ValidationError, match="odd"):
        MotionSettings(blur=4)
    with pytest.raises(ValidationError):
        MotionSettings(detect_fps=0)
    with pytest.raises(ValidationError):
        MotionSettings(unknown=1)
    assert MotionSettings(detect_width=200).analysis_width == 200
