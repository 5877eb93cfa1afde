"""What both detector backends share: which crops of a frame to run, class selection, and mapping boxes back.

`plan_crops` is pure decision logic (pixel boxes in, pixel boxes out). `RegionDetector` is the ObjectDetector
both backends return: it cuts the planned crops, asks its engine (the loaded model) for boxes in crop pixels,
and maps them to fractions of the full frame. An engine is shared by every camera that uses the same model
(see objects.load_detector); a RegionDetector holds one camera's classes and minimum score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from .objects import Detection, DetectorError

if TYPE_CHECKING:
    import numpy as np

    from sealcam.config.objects import ObjectsConfig

Box = tuple[int, int, int, int]

#: A crop is never smaller than this many pixels a side (where the frame allows): a detector needs context
#: around a small moving thing, and a tiny crop scaled up to the network size is mostly blur.
MIN_CROP = 64
#: Crops covering more than this fraction of the frame run as one whole-frame call (cheaper than several).
WHOLE_FRAME_AREA = 0.6


def plan_crops(regions: Sequence[Box], width: int, height: int, margin: float, max_regions: int) -> list[Box]:
    """The pixel boxes (x0, y0, x1, y1) to run the detector on, for motion `regions` in a width x height frame.

    Each region is grown by `margin` x its size on every side (and to at least MIN_CROP a side), clipped to the
    frame; overlapping crops are merged into their bounding box until none overlap. No regions, more than
    `max_regions` crops, or crops covering most of the frame: the whole frame, once.
    """
    whole = [(0, 0, width, height)]
    crops = [c for r in regions if (c := _grow(r, width, height, margin)) is not None]
    if not crops:
        return whole
    crops = _merge(crops)
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in crops)
    if len(crops) > max_regions or area > WHOLE_FRAME_AREA * width * height:
        return whole
    return sorted(crops)


def _grow(box: Box, width: int, height: int, margin: float) -> Box | None:
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = max(0, min(x0, x1)), min(width, max(x0, x1))
    y0, y1 = max(0, min(y0, y1)), min(height, max(y0, y1))
    if x1 <= x0 or y1 <= y0:
        return None  # empty or wholly outside the frame
    gx, gy = round((x1 - x0) * margin), round((y1 - y0) * margin)
    x0, x1 = _span(x0 - gx, x1 + gx, width)
    y0, y1 = _span(y0 - gy, y1 + gy, height)
    return x0, y0, x1, y1


def _span(lo: int, hi: int, limit: int) -> tuple[int, int]:
    """[lo, hi) clipped to [0, limit); if then shorter than MIN_CROP, widened about its centre to MIN_CROP (or
    the whole `limit`) and moved back inside."""
    lo, hi = max(0, lo), min(limit, hi)
    if hi - lo < MIN_CROP:
        centre = (lo + hi) // 2
        lo, hi = centre - MIN_CROP // 2, centre + MIN_CROP - MIN_CROP // 2
        if lo < 0:
            lo, hi = 0, hi - lo
        if hi > limit:
            lo, hi = lo - (hi - limit), limit
    return max(0, lo), min(limit, hi)


def _merge(boxes: list[Box]) -> list[Box]:
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def class_ids(wanted: Sequence[str] | None, names: dict[int, str], model: object) -> list[int] | None:
    """Ids of the `wanted` class names in the model's `names` (case-insensitive); None keeps every class."""
    if wanted is None:
        return None
    by_name = {n.lower(): i for i, n in names.items()}
    missing = [w for w in wanted if w.lower() not in by_name]
    if missing:
        known = ", ".join(names[i] for i in sorted(names)[:100])
        raise DetectorError(f"objects.classes {missing} are not classes of model {model}; it knows: {known}")
    return sorted({by_name[w.lower()] for w in wanted})


class Engine(Protocol):
    """A loaded model. `infer` returns, per image, an (N, 6) float array: x0, y0, x1, y1 (that image's pixels),
    score, class id; best first, already filtered by class and score and suppressed (NMS)."""

    names: dict[int, str]

    def infer(self, images: list[np.ndarray], classes: list[int] | None, min_score: float, iou: float,
              max_det: int) -> list[np.ndarray]: ...


class RegionDetector:
    """An ObjectDetector: one engine plus one camera's class selection and thresholds."""

    def __init__(self, engine: Engine, cfg: ObjectsConfig) -> None:
        self.engine = engine
        self.cfg = cfg
        self.classes = class_ids(cfg.classes, engine.names, cfg.model)

    def detect(self, frame: np.ndarray, regions: Sequence[Box]) -> list[Detection]:
        shape = getattr(frame, "shape", None)
        if shape is None or len(shape) != 3 or shape[2] != 3 or str(frame.dtype) != "uint8" or 0 in shape:
            raise DetectorError(f"detect() takes an HxWx3 uint8 BGR frame, got {type(frame).__name__} "
                                f"{getattr(frame, 'dtype', '')} {shape}")
        height, width = shape[:2]
        cfg = self.cfg
        crops = plan_crops(regions, width, height, cfg.region_margin, cfg.max_regions)
        images = [frame[y0:y1, x0:x1] for x0, y0, x1, y1 in crops]
        results = self.engine.infer(images, self.classes, cfg.min_score, cfg.iou, cfg.max_detections)
        names = self.engine.names
        out: list[Detection] = []
        for (cx, cy, _, _), rows in zip(crops, results, strict=True):
            for x0, y0, x1, y1, score, cls in rows.tolist():
                box = (_frac(x0 + cx, width), _frac(y0 + cy, height), _frac(x1 + cx, width), _frac(y1 + cy, height))
                out.append(Detection(names.get(int(cls), str(int(cls))), float(score), box))
        out.sort(key=lambda d: -d.score)
        return out[: cfg.max_detections]


def _frac(v: float, size: int) -> float:
    return min(1.0, max(0.0, v / size))
