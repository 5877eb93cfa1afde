"""Object detection for the motion service: the interface, and `load_detector` picking a backend.

    detector = load_detector(cfg)                        # cfg: sealcam.config.objects.ObjectsConfig
    detections = detector.detect(frame, [(x0, y0, x1, y1), ...])   # motion regions in frame pixels; [] = all

Backends (each an optional extra, imported only when chosen, so the rest of sealcam never imports torch):
`ultralytics` (objects_ultralytics.py: any format ultralytics loads, CPU or GPU; needs torch) and `onnx`
(objects_onnx.py: .onnx on ONNX Runtime and numpy only, for slim CPU / Raspberry Pi images). Both share the
cropping of motion regions and the mapping of boxes back to the frame (objects_regions.py). Nothing is ever
downloaded: the model file comes from the user, and a missing one is a DetectorError naming the path.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sealcam.config.objects import MODEL_SUFFIXES, ObjectsConfig

if TYPE_CHECKING:
    import numpy as np

GUIDE = "docs/guide/object-detection.md"


@dataclass(frozen=True)
class Detection:
    """One detected object. `box` is (x0, y0, x1, y1) as fractions (0..1) of the full frame."""

    label: str
    score: float
    box: tuple[float, float, float, float]


class ObjectDetector(Protocol):
    def detect(self, frame: np.ndarray, regions: Sequence[tuple[int, int, int, int]]) -> list[Detection]:
        """Objects in `frame` (HxWx3 uint8 BGR) within the motion `regions` (pixel boxes x0,y0,x1,y1; [] = the
        whole frame), best score first."""
        ...


class DetectorError(Exception):
    """The detector cannot be set up or run: missing model file, unsupported format, missing package..."""


def load_detector(cfg: ObjectsConfig) -> ObjectDetector:
    """The detector `cfg` describes, loaded and ready (the model is read now, not on the first frame).

    Cameras whose configs differ only in classes / min_score / regions settings share one loaded model.
    """
    from .objects_regions import RegionDetector

    path = check_model_path(cfg.model)
    backend = choose_backend(cfg.backend, path)
    key = (backend, str(path), path.stat().st_mtime_ns, cfg.device, cfg.imgsz, cfg.threads)
    engine = _ENGINES.get(key)
    if engine is None:
        if backend == "onnx":
            _require("onnxruntime", "the onnx backend", "detect-onnx")
            from .objects_onnx import OnnxEngine

            engine = OnnxEngine(path, cfg)
        else:
            _require("ultralytics", "the ultralytics backend", "detect")
            from .objects_ultralytics import UltralyticsEngine

            engine = UltralyticsEngine(path, cfg)
        _ENGINES[key] = engine
    return RegionDetector(engine, cfg)


#: Loaded models, shared by the cameras that use the same one (filled by load_detector, never at import).
_ENGINES: dict[tuple[object, ...], Any] = {}


def check_model_path(model: Path | None) -> Path:
    """`model` if it names an existing model file (or model folder) of a known format, else DetectorError."""
    if model is None:
        raise DetectorError(f"objects.model is not set: give the path of a YOLO model file (see {GUIDE})")
    if not model.exists():
        raise DetectorError(
            f"model file {model} does not exist (objects.model). sealcam downloads nothing: copy a YOLO model "
            f"(.pt, .onnx, ...) there, or export one offline (see {GUIDE})"
        )
    if model.is_dir():
        return model
    if model.suffix.lower() not in MODEL_SUFFIXES:
        raise DetectorError(
            f"unsupported model format {model.suffix or '(no suffix)'!r} for {model} (objects.model): expected "
            f"{', '.join(MODEL_SUFFIXES)} or an exported model folder"
        )
    if not model.is_file():
        raise DetectorError(f"model {model} is not a regular file (objects.model)")
    return model


def choose_backend(backend: str, path: Path) -> str:
    """'onnx' or 'ultralytics' for a configured backend ('auto', 'onnx', 'ultralytics') and model path."""
    is_onnx = path.suffix.lower() == ".onnx" and not path.is_dir()
    if backend == "onnx":
        if not is_onnx:
            raise DetectorError(
                f"objects.backend onnx loads .onnx files only, not {path}; export the model to ONNX "
                f"(see {GUIDE}) or use backend ultralytics"
            )
        return "onnx"
    if backend == "auto" and is_onnx and importlib.util.find_spec("onnxruntime") is not None:
        return "onnx"
    return "ultralytics"


def _require(module: str, what: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise DetectorError(
            f"{what} needs the Python package {module!r}, which is not installed: install sealcam's "
            f"{extra!r} extra (pip install 'sealcam[{extra}]'; see {GUIDE})"
        )
