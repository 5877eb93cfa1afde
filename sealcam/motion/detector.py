"""Pixel motion on numpy frames (pure: no I/O, no clock; OpenCV for the arithmetic).

Per frame, at analysis size (`analysis_width`, aspect kept):

1. grey, Gaussian blur (sensor noise);
2. global light compensation: fit `frame ≈ a * background + b` over the whole frame (exposure, clouds, lights
   dimming act on every pixel alike) and compare the frame with the fitted background, not the raw one;
3. shake-tolerant difference: a pixel changed only if it is darker than the darkest or brighter than the
   brightest background pixel in its 5x5 neighbourhood by more than `threshold`, and the background pixel is
   likewise outside the frame's 5x5 neighbourhood (a camera shaking by a pixel or two moves edges, not blobs);
4. zones/masks (polygon masks), morphological open (lone pixels) and dilate (join a body's parts);
5. blobs (connected components) of at least `min_area` of the frame are motion, with their boxes;
6. if more than `lighting_fraction` of the frame changed at once even after step 2 (a light switched on that
   casts new shadows, an auto-exposure jump), nothing is reported and the background is re-learnt at once;
7. the background follows the scene with `learning_rate` (running average); a flat background (a covered
   lens) is replaced at once by the first frame that is not flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the frame
Points = Sequence[tuple[float, float]]

SHAKE_KERNEL = np.ones((5, 5), np.uint8)
FRAME_KERNEL = np.ones((5, 5), np.uint8)
OPEN_KERNEL = np.ones((3, 3), np.uint8)
DILATE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
MAX_BOXES = 16
MAX_GAIN = 3.0
FLAT_VAR = 4.0  # variance (grey levels²) below which a background counts as flat


@dataclass(frozen=True)
class Region:
    name: str
    points: tuple[tuple[float, float], ...]  # fractions of the frame


@dataclass(frozen=True)
class MotionParams:
    threshold: int = 25
    blur: int = 5
    min_area: float = 0.002
    learning_rate: float = 0.05
    lighting_fraction: float = 0.35
    analysis_width: int = 320
    zones: tuple[Region, ...] = ()
    masks: tuple[Region, ...] = ()

    @classmethod
    def from_settings(cls, s) -> MotionParams:  # noqa: ANN001 - sealcam.config.motion.MotionSettings
        return cls(threshold=s.threshold, blur=s.blur, min_area=s.min_area, learning_rate=s.learning_rate,
                   lighting_fraction=s.lighting_fraction, analysis_width=s.analysis_width,
                   zones=tuple(Region(z.name, tuple(z.fractions())) for z in s.zones),
                   masks=tuple(Region(m.name, tuple(m.fractions())) for m in s.masks))


@dataclass(frozen=True)
class MotionResult:
    motion: bool
    area: float = 0.0  # fraction of the frame in moving blobs
    boxes: tuple[Box, ...] = ()  # largest first, at most MAX_BOXES
    changed: float = 0.0  # fraction of pixels that changed (before blob filtering)
    lighting: bool = False  # a global change was suppressed (background re-learnt)
    zones: tuple[str, ...] = ()  # zones the blobs' centres fall in
    gray: np.ndarray | None = field(default=None, repr=False, compare=False)  # the analysis frame (for tamper)

    def pixel_boxes(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        return [(int(x0 * width), int(y0 * height), int(np.ceil(x1 * width)), int(np.ceil(y1 * height)))
                for x0, y0, x1, y1 in self.boxes]


def analysis_size(width: int, height: int, analysis_width: int) -> tuple[int, int]:
    w = min(width, analysis_width)
    return w, max(8, round(height * w / width))


def polygon_mask(regions: Sequence[Region], size: tuple[int, int]) -> np.ndarray:
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    for r in regions:
        pts = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in r.points], np.int32)
        cv2.fillPoly(mask, [pts], 255)
    return mask


class MotionDetector:
    """Stateful (the background model); one per camera. Frames must all have the same size."""

    def __init__(self, params: MotionParams, frame_size: tuple[int, int]) -> None:
        self.p = params
        self.frame_size = frame_size
        self.size = analysis_size(*frame_size, params.analysis_width)
        w, h = self.size
        self.pixels = w * h
        self.min_pixels = max(1, int(params.min_area * self.pixels))
        self.bg: np.ndarray | None = None
        include = polygon_mask(params.zones, self.size) if params.zones else np.full((h, w), 255, np.uint8)
        if params.masks:
            include = cv2.bitwise_and(include, cv2.bitwise_not(polygon_mask(params.masks, self.size)))
        self.include: np.ndarray | None = None if params.zones == () and params.masks == () else include
        self.zone_masks = [(z.name, polygon_mask([z], self.size)) for z in params.zones]
        self.counted = max(1, cv2.countNonZero(include))
        self.frames = 0

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """BGR (or grey) frame -> blurred grey at analysis size."""
        if image.ndim == 3:
            if (image.shape[1], image.shape[0]) != self.size:
                image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        else:
            gray = image if (image.shape[1], image.shape[0]) == self.size else cv2.resize(
                image, self.size, interpolation=cv2.INTER_AREA)
        if self.p.blur:
            gray = cv2.GaussianBlur(gray, (self.p.blur, self.p.blur), 0)
        return gray

    def reset(self) -> None:
        self.bg = None

    def process(self, image: np.ndarray) -> MotionResult:
        gray = self.prepare(image)
        self.frames += 1
        if self.bg is None:
            self.bg = gray.astype(np.float32)
            return MotionResult(False, gray=gray)
        ref = self._compensated(gray)
        if ref is None:  # a flat background (covered lens, black frames) and a frame that is not: start over
            self.bg = gray.astype(np.float32)
            return MotionResult(False, changed=1.0, lighting=True, gray=gray)
        # Changed: outside the background's local range AND the background outside the frame's local range
        # (the background, an average, is blurrier than any one frame of a shaking camera).
        diff = cv2.max(cv2.subtract(gray, cv2.dilate(ref, SHAKE_KERNEL)), cv2.subtract(cv2.erode(ref, SHAKE_KERNEL),
                                                                                       gray))
        back = cv2.max(cv2.subtract(ref, cv2.dilate(gray, FRAME_KERNEL)), cv2.subtract(cv2.erode(gray, FRAME_KERNEL),
                                                                                      ref))
        _, changed = cv2.threshold(cv2.min(diff, back), self.p.threshold, 255, cv2.THRESH_BINARY)
        if self.include is not None:
            changed = cv2.bitwise_and(changed, self.include)
        n_changed = cv2.countNonZero(changed)
        frac = n_changed / self.counted
        if frac > self.p.lighting_fraction:
            self.bg = gray.astype(np.float32)
            return MotionResult(False, changed=frac, lighting=True, gray=gray)
        if n_changed < self.min_pixels:
            cv2.accumulateWeighted(gray, self.bg, self.p.learning_rate)
            return MotionResult(False, changed=frac, gray=gray)
        blobs = cv2.dilate(cv2.morphologyEx(changed, cv2.MORPH_OPEN, OPEN_KERNEL), DILATE_KERNEL)
        count, _labels, stats, centroids = cv2.connectedComponentsWithStats(blobs, connectivity=8)
        w, h = self.size
        kept = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= self.min_pixels]
        kept.sort(key=lambda i: -stats[i, cv2.CC_STAT_AREA])
        area = sum(int(stats[i, cv2.CC_STAT_AREA]) for i in kept) / self.counted
        boxes = tuple((stats[i, 0] / w, stats[i, 1] / h, (stats[i, 0] + stats[i, 2]) / w,
                       (stats[i, 1] + stats[i, 3]) / h) for i in kept[:MAX_BOXES])
        zones = tuple(name for name, m in self.zone_masks
                      if any(m[min(h - 1, int(centroids[i][1])), min(w - 1, int(centroids[i][0]))] for i in kept))
        # The same rate everywhere: slower learning under blobs would keep a moved camera's whole view "moving".
        cv2.accumulateWeighted(gray, self.bg, self.p.learning_rate)
        return MotionResult(bool(kept), area, boxes, frac, zones=zones, gray=gray)

    def _compensated(self, gray: np.ndarray) -> np.ndarray | None:
        """The background with the frame's global gain/offset applied (least squares fit), as uint8; None when
        the background is flat and the frame is not (nothing to fit)."""
        bg = self.bg
        assert bg is not None
        mb, sb = cv2.meanStdDev(bg)
        mg, sg = (float(v[0, 0]) for v in cv2.meanStdDev(gray))
        var = float(sb[0, 0]) ** 2
        if var < FLAT_VAR:
            if sg * sg >= 4 * FLAT_VAR:
                return None
            return cv2.convertScaleAbs(bg, alpha=1.0, beta=mg - float(mb[0, 0]))
        cov = cv2.mean(cv2.multiply(bg, gray, dtype=cv2.CV_32F))[0] - float(mb[0, 0]) * mg
        a = min(MAX_GAIN, max(1 / MAX_GAIN, cov / var))
        b = mg - a * float(mb[0, 0])
        return cv2.convertScaleAbs(bg, alpha=a, beta=b)
