"""The `ultralytics` detector backend: any model format ultralytics loads (.pt, .onnx, .engine, OpenVINO...).

Needs sealcam's `detect` extra (ultralytics, torch, torchvision). Nothing is downloaded: before ultralytics is
imported, YOLO_OFFLINE=1 (no online check, so no pip AutoUpdate, no analytics events, no asset downloads) and
YOLO_AUTOINSTALL=false are set; the model path is checked to exist before YOLO() sees it (a missing file with
a stock name such as yolov8n.pt would otherwise be fetched from GitHub).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .objects import DetectorError

if TYPE_CHECKING:
    import numpy as np

    from sealcam.config.objects import ObjectsConfig

log = logging.getLogger("sealcam.motion.objects")

#: Environment that keeps ultralytics off the network; set before it is first imported.
OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}


def import_ultralytics_offline() -> Any:
    """The ultralytics package, imported with OFFLINE_ENV set (and its online flags forced off if it was
    already imported by someone else without them)."""
    os.environ.update(OFFLINE_ENV)
    import ultralytics
    from ultralytics import utils
    from ultralytics.utils import checks, events

    if utils.ONLINE:  # imported earlier without YOLO_OFFLINE: the online check already ran
        log.warning("motion: ultralytics was imported before YOLO_OFFLINE was set; forcing it offline")
        for module in (utils, checks, events):
            module.ONLINE = False
        if getattr(events, "events", None) is not None:
            events.events.enabled = False
    return ultralytics


class UltralyticsEngine:
    """A model loaded with ultralytics' YOLO(); `infer` runs one batched predict over all crops (serialised:
    cameras sharing the engine from several threads take turns)."""

    def __init__(self, path: Path, cfg: ObjectsConfig) -> None:
        ultralytics = import_ultralytics_offline()
        import torch

        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise DetectorError(f"objects.device is {cfg.device} but torch {torch.__version__} sees no CUDA GPU "
                                "(a CPU-only torch build, or no driver); use device cpu")
        self.path = path
        self.lock = threading.Lock()  # one ultralytics predictor is not safe to call from two threads
        self.device = cfg.device
        self.imgsz = cfg.imgsz
        self.extra: dict[str, Any] = {}
        if cfg.device.startswith("cuda"):  # fp16 on the GPU: `quantize` since 8.4, `half` (deprecated) before
            from ultralytics.cfg import DEFAULT_CFG_DICT

            self.extra = {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}
        try:
            self.model = ultralytics.YOLO(str(path), task="detect")
        except (OSError, RuntimeError, ValueError, KeyError, TypeError, AttributeError, ModuleNotFoundError) as exc:
            raise DetectorError(f"cannot load model {path} with ultralytics {ultralytics.__version__}: "
                                f"{type(exc).__name__}: {exc}") from exc
        if getattr(self.model, "task", "detect") != "detect":
            raise DetectorError(f"model {path} is a {self.model.task} model; object detection needs a detect model")
        self._predict([_blank(self.imgsz)], None, 0.5, 0.5, 1)  # sets up the predictor now, not on a frame
        # names: for exported formats known only once the predictor has loaded the model
        self.names: dict[int, str] = {int(k): str(v) for k, v in dict(self.model.names).items()}
        # `import ultralytics` sets OMP_NUM_THREADS=1 and its predictor set-up torch threads to cores - 1:
        # for inference here, all cores (or objects.threads)
        torch.set_num_threads(cfg.threads or len(os.sched_getaffinity(0)))
        log.info("motion: loaded %s with ultralytics %s on %s, %d classes", path, ultralytics.__version__,
                 cfg.device, len(self.names))

    def infer(self, images: list[np.ndarray], classes: list[int] | None, min_score: float, iou: float,
              max_det: int) -> list[np.ndarray]:
        out = []
        with self.lock:
            results = self._predict(images, classes, min_score, iou, max_det)
        for result in results:
            data = result.boxes.data  # (N, 6): x0, y0, x1, y1, score, class in the input image's pixels
            out.append(data.float().cpu().numpy())
        return out

    def _predict(self, images: list[np.ndarray], classes: list[int] | None, min_score: float, iou: float,
                 max_det: int) -> list[Any]:
        # rect=False: every image letterboxed to the imgsz square, as the onnx backend (and a fixed-size export)
        # does, so a model gives the same boxes whichever backend serves it
        return self.model.predict(images, imgsz=self.imgsz, conf=min_score, iou=iou, classes=classes,
                                  max_det=max_det, device=self.device, rect=False, verbose=False, **self.extra)


def _blank(size: int) -> np.ndarray:
    import numpy as np

    return np.zeros((size, size, 3), np.uint8)
