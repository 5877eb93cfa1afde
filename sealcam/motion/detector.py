"""Pixel motion on numpy frames (pure: no I/O, no clock; OpenCV for the arithmetic).

Per frame, at analysis size (`analysis_width`, aspect kept):

1. grey, Gaussian blur (sensor noise); for a colour frame also its chroma (Cr, Cb of YCrCb) at half the
   analysis size (where 4:2:0 video keeps its colour anyway);
2. global light compensation: fit `frame ≈ a * background + b` over the whole frame (exposure, clouds, lights
   dimming act on every pixel alike) and compare the frame with the fitted background, not the raw one (the
   chroma background is scaled around neutral by the same `a`, clamped to 0..MAX_GAIN);
3. shake-tolerant difference: a pixel changed only if it is darker than the darkest or brighter than the
   brightest background pixel in its 5x5 neighbourhood by more than `threshold`, and the background pixel is
   likewise outside the frame's 5x5 neighbourhood (a camera shaking by a pixel or two moves edges, not blobs);
   the same on each chroma channel (3x3 at half size) with `chroma_threshold`, so an object of another colour
   but the same grey level is seen; a pixel changed in grey or in colour is changed;
4. zones/masks (polygon masks), morphological open (lone pixels) and dilate (join a body's parts);
5. blobs (connected components) of at least `min_area` of the frame are motion, with their boxes;
6. if more than `lighting_fraction` of the frame changed at once even after step 2, it is either a lighting
   change (a light switched on that casts new shadows, a day/night switch, an auto-exposure jump) or an object
   filling much of the view (a person right past the lens, a truck). Lighting keeps the scene's structure, an
   object replaces it: per 16x16 block, the normalised correlation of the fine texture of frame and background
   (`_structure_kept`; the light is fitted again on the blocks that kept it, as a large object biases step 2);
   if at least LIGHTING_KEPT of the changed area lies in blocks that still correlate (`structure_kept`) it is
   lighting: nothing is reported and the background is re-learnt at once; else the blobs are motion;
7. the background follows the scene with `learning_rate` (running average), except under a large object
   (frozen there for at most LARGE_FRAMES frames in a row, then re-learnt); a flat background (a covered lens)
   is replaced at once by the first frame that is not flat.
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
CHROMA_KERNEL = np.ones((3, 3), np.uint8)  # at half size: about the grey 5x5
DILATE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
MAX_BOXES = 16
MAX_GAIN = 3.0
FLAT_VAR = 4.0  # variance (grey levels²) below which a background counts as flat
UNIFORM_VAR = 16.0  # a frame this flat (covered, blinded, black) has no structure to compare: lighting
STRUCT_BLOCK = 16  # block size (analysis pixels) for the structure comparison
STRUCT_SIGMA = 3.0  # fine texture: the grey minus its Gaussian blur of this sigma (drops vignettes, gradients)
STRUCT_VAR = 4.0  # fine-texture variance (grey levels², above blurred sensor noise) that counts as texture
KEPT_NCC = 0.5  # a block whose frame and background texture correlate at least this much kept its structure
LIGHTING_KEPT = 0.65  # lighting when at least this share of the changed area kept its structure
LARGE_FRAMES = 50  # a large object for this many frames in a row (10 s at 5 fps) is the new background


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
    chroma_threshold: int = 12  # 0: grey only
    zones: tuple[Region, ...] = ()
    masks: tuple[Region, ...] = ()

    @classmethod
    def from_settings(cls, s) -> MotionParams:  # noqa: ANN001 - sealcam.config.motion.MotionSettings
        return cls(threshold=s.threshold, blur=s.blur, min_area=s.min_area, learning_rate=s.learning_rate,
                   lighting_fraction=s.lighting_fraction, analysis_width=s.analysis_width,
                   chroma_threshold=s.chroma_threshold,
                   zones=tuple(Region(z.name, tuple(z.fractions())) for z in s.zones),
                   masks=tuple(Region(m.name, tuple(m.fractions())) for m in s.masks))


@dataclass(frozen=True)
class MotionResult:
    motion: bool
    area: float = 0.0  # fraction of the frame in moving blobs
    boxes: tuple[Box, ...] = ()  # largest first, at most MAX_BOXES
    changed: float = 0.0  # fraction of pixels that changed (before blob filtering)
    lighting: bool = False  # a global change was suppressed (background re-learnt)
    structure_kept: float | None = None  # share of a large change that kept its structure (None: not checked)
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
        self.chroma_size = (max(1, w // 2), max(1, h // 2))
        self.cbg: np.ndarray | None = None  # chroma background: Cr above Cb, float32 (2 * h/2, w/2)
        include = polygon_mask(params.zones, self.size) if params.zones else np.full((h, w), 255, np.uint8)
        if params.masks:
            include = cv2.bitwise_and(include, cv2.bitwise_not(polygon_mask(params.masks, self.size)))
        self.include: np.ndarray | None = None if params.zones == () and params.masks == () else include
        self.zone_masks = [(z.name, polygon_mask([z], self.size)) for z in params.zones]
        self.counted = max(1, cv2.countNonZero(include))
        self.frames = 0
        self.large_frames = 0  # consecutive frames with a large object

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """BGR (or grey) frame -> blurred grey at analysis size."""
        return self._prepare(image)[0]

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Blurred grey at analysis size, and for a colour frame (with chroma_threshold) its chroma at half that
        size: Cr stacked above Cb in one uint8 image (one pass of each operation for both channels)."""
        chroma = None
        if image.ndim == 3:
            if (image.shape[1], image.shape[0]) != self.size:
                image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            if self.p.chroma_threshold:
                half = cv2.cvtColor(cv2.resize(image, self.chroma_size, interpolation=cv2.INTER_AREA),
                                    cv2.COLOR_BGR2YCrCb)
                _y, cr, cb = cv2.split(half)
                chroma = np.vstack((cr, cb))
        else:
            gray = image if (image.shape[1], image.shape[0]) == self.size else cv2.resize(
                image, self.size, interpolation=cv2.INTER_AREA)
        if self.p.blur:
            gray = cv2.GaussianBlur(gray, (self.p.blur, self.p.blur), 0)
        return gray, chroma

    def reset(self) -> None:
        self.bg = self.cbg = None

    def _relearn(self, gray: np.ndarray, chroma: np.ndarray | None) -> None:
        self.bg = gray.astype(np.float32)
        self.cbg = None if chroma is None else chroma.astype(np.float32)

    def _learn(self, gray: np.ndarray, chroma: np.ndarray | None, frozen: np.ndarray | None = None) -> None:
        """Running average, except under `frozen` (0/255 at analysis size) when given."""
        assert self.bg is not None
        mask = None if frozen is None else cv2.bitwise_not(frozen)
        cv2.accumulateWeighted(gray, self.bg, self.p.learning_rate, mask=mask)
        if chroma is not None and self.cbg is not None:
            if mask is not None:
                mask = np.vstack([cv2.resize(mask, self.chroma_size, interpolation=cv2.INTER_NEAREST)] * 2)
            cv2.accumulateWeighted(chroma, self.cbg, self.p.learning_rate, mask=mask)
        else:
            self.cbg = None if chroma is None else chroma.astype(np.float32)

    def process(self, image: np.ndarray) -> MotionResult:
        gray, chroma = self._prepare(image)
        self.frames += 1
        if self.bg is None:
            self._relearn(gray, chroma)
            return MotionResult(False, gray=gray)
        fit = self._compensated(gray)
        if fit is None:  # a flat background (covered lens, black frames) and a frame that is not: start over
            self._relearn(gray, chroma)
            return MotionResult(False, changed=1.0, lighting=True, gray=gray)
        ref, chroma_gain, frame_var = fit
        changed = self._changed(gray, chroma, ref, chroma_gain)
        n_changed = cv2.countNonZero(changed)
        frac = n_changed / self.counted
        kept = None
        if frac > self.p.lighting_fraction:
            kept = 1.0
            if frame_var >= UNIFORM_VAR:
                kept, changed = self._structure_kept(gray, chroma)
                n_changed = cv2.countNonZero(changed)
                frac = n_changed / self.counted
            if kept >= LIGHTING_KEPT:
                self._relearn(gray, chroma)
                return MotionResult(False, changed=frac, lighting=True, structure_kept=kept, gray=gray)
        if n_changed < self.min_pixels:
            self._learn(gray, chroma)
            return MotionResult(False, changed=frac, gray=gray)
        blobs = cv2.dilate(cv2.morphologyEx(changed, cv2.MORPH_OPEN, OPEN_KERNEL), DILATE_KERNEL)
        count, _labels, stats, centroids = cv2.connectedComponentsWithStats(blobs, connectivity=8)
        w, h = self.size
        blobs_kept = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= self.min_pixels]
        blobs_kept.sort(key=lambda i: -stats[i, cv2.CC_STAT_AREA])
        area = sum(int(stats[i, cv2.CC_STAT_AREA]) for i in blobs_kept) / self.counted
        boxes = tuple((stats[i, 0] / w, stats[i, 1] / h, (stats[i, 0] + stats[i, 2]) / w,
                       (stats[i, 1] + stats[i, 3]) / h) for i in blobs_kept[:MAX_BOXES])
        zones = tuple(name for name, m in self.zone_masks
                      if any(m[min(h - 1, int(centroids[i][1])), min(w - 1, int(centroids[i][0]))]
                             for i in blobs_kept))
        # The same rate everywhere: slower learning under blobs would keep a moved camera's whole view "moving".
        # Except under a large object (a truck passing slowly would leave a ghost as large as itself, which
        # keeps the scene's structure and looks like lighting): frozen there, for at most LARGE_FRAMES frames in
        # a row, then all is re-learnt at once (a camera moved or a truck parked is the new background).
        if kept is None:
            self.large_frames = 0
            self._learn(gray, chroma)
        elif self.large_frames < LARGE_FRAMES:
            self.large_frames += 1
            self._learn(gray, chroma, frozen=changed)
        else:
            self.large_frames = 0
            self._relearn(gray, chroma)
        return MotionResult(bool(blobs_kept), area, boxes, frac, zones=zones, structure_kept=kept, gray=gray)

    def _changed(self, gray: np.ndarray, chroma: np.ndarray | None, ref: np.ndarray, chroma_gain: float) -> np.ndarray:
        """0/255 mask of changed pixels (grey or colour), within zones and outside masks."""
        # Changed: outside the background's local range AND the background outside the frame's local range
        # (the background, an average, is blurrier than any one frame of a shaking camera).
        diff = cv2.max(cv2.subtract(gray, cv2.dilate(ref, SHAKE_KERNEL)), cv2.subtract(cv2.erode(ref, SHAKE_KERNEL),
                                                                                       gray))
        back = cv2.max(cv2.subtract(ref, cv2.dilate(gray, FRAME_KERNEL)), cv2.subtract(cv2.erode(gray, FRAME_KERNEL),
                                                                                      ref))
        _, changed = cv2.threshold(cv2.min(diff, back), self.p.threshold, 255, cv2.THRESH_BINARY)
        if chroma is not None and self.cbg is not None:
            chroma_changed = self._chroma_changed(chroma, chroma_gain)
            if chroma_changed is not None:
                changed = cv2.max(changed, chroma_changed)
        if self.include is not None:
            changed = cv2.bitwise_and(changed, self.include)
        return changed

    def _chroma_changed(self, chroma: np.ndarray, gain: float) -> np.ndarray | None:
        """Pixels (at analysis size, 0/255) whose colour left the compensated chroma background's local range;
        None when the chroma background is colourless and the frame is not (night -> day): it is re-learnt."""
        assert self.cbg is not None
        # A gain on B, G, R (light) scales the chroma's distance from neutral (128) alike. A sudden change of
        # colour over the whole view (white balance, a day/night switch) is a large change: see step 6.
        ref = cv2.convertScaleAbs(self.cbg, alpha=gain, beta=128.0 * (1.0 - gain))
        colourless = cv2.meanStdDev(cv2.convertScaleAbs(self.cbg))[1][0, 0] ** 2 < FLAT_VAR  # uint8: fast
        if colourless and cv2.meanStdDev(chroma)[1][0, 0] ** 2 >= 4 * FLAT_VAR:
            self.cbg = chroma.astype(np.float32)
            return None
        diff = cv2.max(cv2.subtract(chroma, cv2.dilate(ref, CHROMA_KERNEL)),
                       cv2.subtract(cv2.erode(ref, CHROMA_KERNEL), chroma))
        back = cv2.max(cv2.subtract(ref, cv2.dilate(chroma, CHROMA_KERNEL)),
                       cv2.subtract(cv2.erode(chroma, CHROMA_KERNEL), ref))
        _, changed = cv2.threshold(cv2.min(diff, back), self.p.chroma_threshold, 255, cv2.THRESH_BINARY)
        half = changed.shape[0] // 2  # Cr rows above Cb rows
        return cv2.resize(cv2.max(changed[:half], changed[half:]), self.size, interpolation=cv2.INTER_NEAREST)

    def _structure_kept(self, gray: np.ndarray, chroma: np.ndarray | None) -> tuple[float, np.ndarray]:
        """A large change: the share (0..1) of the changed area lying in blocks whose structure the frame kept,
        and the changed mask, recomputed with the light fitted on those blocks.

        Per STRUCT_BLOCK block, normalised correlation of the fine texture (grey minus its blur: blind to a local
        gain and offset, to vignettes and soft shadows) of frame and background; >= KEPT_NCC: kept. A large
        object biases the global light fit (the rest of the view looks relit and counts as changed), so the
        gain/offset is fitted again on the block means of the kept, textured blocks (the scene around the object;
        with too few of them, no fit) and the changed mask recomputed. Blocks where the background has no texture
        (texture appearing may be a light switched on as well as an object), or whose texture the light would have
        drowned in noise (lights off), are left out; when nothing is left, 1.0 (no evidence of an object)."""
        assert self.bg is not None
        w, h = self.size
        bw, bh = min(STRUCT_BLOCK, w), min(STRUCT_BLOCK, h)
        blocks = (w // bw, h // bh)

        def mean(x: np.ndarray) -> np.ndarray:  # whole blocks only (a few edge pixels left out): fast
            return cv2.resize(x[:blocks[1] * bh, :blocks[0] * bw], blocks, interpolation=cv2.INTER_AREA)

        gf = gray.astype(np.float32)
        f = gf - cv2.GaussianBlur(gf, (0, 0), STRUCT_SIGMA)
        b = self.bg - cv2.GaussianBlur(self.bg, (0, 0), STRUCT_SIGMA)
        mf, mb = mean(f), mean(b)
        vf = mean(cv2.multiply(f, f)) - mf * mf
        vb = mean(cv2.multiply(b, b)) - mb * mb
        ncc = (mean(cv2.multiply(f, b)) - mf * mb) / np.sqrt(np.maximum(vf, STRUCT_VAR) * np.maximum(vb, STRUCT_VAR))
        lf, lb = mean(gf), mean(self.bg)  # block brightness
        scene = (vf > STRUCT_VAR) & (vb > STRUCT_VAR) & (ncc >= KEPT_NCC)
        if np.count_nonzero(scene) >= max(3, scene.size // 10) and float(np.var(lb[scene])) >= FLAT_VAR:
            gain = float(np.cov(lb[scene], lf[scene], bias=True)[0, 1] / np.var(lb[scene]))
            a = min(MAX_GAIN, max(1 / MAX_GAIN, gain))
            ref = cv2.convertScaleAbs(self.bg, alpha=a, beta=float(lf[scene].mean()) - a * float(lb[scene].mean()))
        else:  # hardly any of the scene's texture left to fit the light on (a truck fills the view): no fit
            gain, ref = 1.0, cv2.convertScaleAbs(self.bg)
        changed = self._changed(gray, chroma, ref, min(MAX_GAIN, max(0.0, gain)))
        # Texture the light leaves visible: the block's own brightness ratio (lights off) or the scene's gain.
        ratio2 = np.maximum((lf / np.maximum(lb, 1.0)) ** 2, min(MAX_GAIN, max(0.0, gain)) ** 2)
        decidable = (vb > STRUCT_VAR) & ((vf > STRUCT_VAR) | (vb * ratio2 > STRUCT_VAR))
        weight = mean(changed.astype(np.float32)) * decidable
        total = float(weight.sum())
        if total <= 0:
            return 1.0, changed
        return float(weight[ncc >= KEPT_NCC].sum()) / total, changed

    def _compensated(self, gray: np.ndarray) -> tuple[np.ndarray, float, float] | None:
        """The background with the frame's global gain/offset applied (least squares fit `frame ≈ a * bg + b`,
        1/MAX_GAIN <= a <= MAX_GAIN) as uint8, the gain for the chroma (the fit's own, 0..MAX_GAIN: a frame gone
        dark has lost its colour too) and the frame's variance; None when the background is flat and the frame is
        not (nothing to fit)."""
        assert self.bg is not None
        mb, sb = (float(v[0, 0]) for v in cv2.meanStdDev(self.bg))
        mf, sf = (float(v[0, 0]) for v in cv2.meanStdDev(gray))
        var = sb * sb
        if var < FLAT_VAR:
            if sf * sf >= 4 * FLAT_VAR:
                return None
            fitted = 1.0
        else:
            fitted = (cv2.mean(cv2.multiply(self.bg, gray, dtype=cv2.CV_32F))[0] - mb * mf) / var
        a = min(MAX_GAIN, max(1 / MAX_GAIN, fitted))
        return cv2.convertScaleAbs(self.bg, alpha=a, beta=mf - a * mb), min(MAX_GAIN, max(0.0, fitted)), sf * sf
