"""The `onnx` detector backend: a YOLO detect model exported to ONNX, run on ONNX Runtime with numpy only.

No torch, no ultralytics: for slim CPU and Raspberry Pi images (sealcam's `detect-onnx` extra). Handles the
graphs ultralytics exports for detect models: output [1, 4 + nc, N] (YOLOv5u/v8/v9/11: centre x, centre y,
width, height, then one score per class; NMS done here) and end-to-end output [1, K, 6] (YOLOv10/26: x0, y0,
x1, y1, score, class; no NMS needed). Class names come from the model's metadata (`names`, written by
ultralytics' exporter). Pre-processing matches ultralytics': letterbox (bilinear resize, grey 114 padding,
centred), BGR to RGB, 0..1 floats, NCHW.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .objects import DetectorError

if TYPE_CHECKING:
    from sealcam.config.objects import ObjectsConfig

log = logging.getLogger("sealcam.motion.objects")

#: Candidates kept (best first) before NMS, as ultralytics does, so a noisy frame cannot make NMS quadratic.
MAX_NMS = 30000
#: Class offset for class-aware NMS in one pass (boxes of different classes never overlap).
MAX_WH = 7680


class OnnxEngine:
    """An ONNX Runtime session over a YOLO detect graph; `infer` runs each crop through it."""

    def __init__(self, path: Path, cfg: ObjectsConfig) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if cfg.threads is not None:
            opts.intra_op_num_threads = cfg.threads
        opts.log_severity_level = 3
        # no busy-waiting between calls: detection runs now and then, beside the decoder that needs the cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=_providers(ort, cfg.device))
        except (*_ort_errors(), RuntimeError, ValueError, OSError) as exc:
            raise DetectorError(f"cannot load ONNX model {path}: {type(exc).__name__}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.names = parse_names(meta.get("names"), path)
        task = meta.get("task", "detect")
        if task != "detect":
            raise DetectorError(f"model {path} is a {task} model; object detection needs a detect model")
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.shape[1] != 3:
            raise DetectorError(f"model {path} has input {inp.name} {inp.shape}; expected [1, 3, H, W] (a YOLO "
                                "detect model exported by ultralytics)")
        self.input_name = inp.name
        self.dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        h, w = inp.shape[2], inp.shape[3]
        if isinstance(h, int) and isinstance(w, int):
            self.size = (h, w)  # fixed at export
            if (h, w) != (cfg.imgsz, cfg.imgsz):
                log.info("motion: %s was exported at %dx%d; objects.imgsz %d is not used", path, w, h, cfg.imgsz)
        else:
            self.size = (cfg.imgsz, cfg.imgsz)
        out = self.session.get_outputs()[0].shape
        self.end2end = meta.get("end2end") == "True" or (len(out) == 3 and out[2] == 6 and out[1] != 4 + len(
            self.names))
        if not self.end2end and len(out) == 3 and isinstance(out[1], int) and out[1] != 4 + len(self.names):
            raise DetectorError(f"model {path} output {out} does not match its {len(self.names)} class names "
                                "(expected [1, 4 + classes, N]); is it a YOLO detect model?")
        log.info("motion: loaded %s on ONNX Runtime %s (%s), %d classes, input %dx%d", path, ort.__version__,
                 self.session.get_providers()[0], len(self.names), self.size[1], self.size[0])

    def infer(self, images: list[np.ndarray], classes: list[int] | None, min_score: float, iou: float,
              max_det: int) -> list[np.ndarray]:
        out = []
        for image in images:
            blob, gain, pad = letterbox(image, self.size)
            raw = self.session.run(None, {self.input_name: blob.astype(self.dtype, copy=False)})[0][0]
            if self.end2end:
                rows = _end2end(raw.astype(np.float32), classes, min_score, max_det)
            else:
                rows = decode(raw.astype(np.float32), classes, min_score, iou, max_det)
            rows[:, [0, 2]] = ((rows[:, [0, 2]] - pad[0]) / gain).clip(0, image.shape[1])
            rows[:, [1, 3]] = ((rows[:, [1, 3]] - pad[1]) / gain).clip(0, image.shape[0])
            out.append(rows)
        return out


def _providers(ort: Any, device: str) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DetectorError(f"objects.device is {device} but this onnxruntime has no CUDA provider: install "
                                "onnxruntime-gpu instead of onnxruntime, or use device cpu")
        gpu = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": gpu}), "CPUExecutionProvider"]
    raise DetectorError(f"objects.device {device} is not supported by the onnx backend (cpu or cuda)")


def _ort_errors() -> tuple[type[Exception], ...]:
    """onnxruntime's own exception classes (InvalidProtobuf, NoSuchFile, Fail...: plain Exception subclasses)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(e for e in vars(state).values() if isinstance(e, type) and issubclass(e, Exception))


def parse_names(text: str | None, path: Path) -> dict[int, str]:
    """Class names from ultralytics' `names` metadata, e.g. "{0: 'person', 1: 'bicycle'}"."""
    if not text:
        raise DetectorError(f"ONNX model {path} has no 'names' metadata: export it with ultralytics "
                            "(model.export(format='onnx')), which records its class names")
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise DetectorError(f"ONNX model {path}: cannot read its 'names' metadata {text[:80]!r}") from exc
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DetectorError(f"ONNX model {path}: 'names' metadata is not a dict of class names: {text[:80]!r}")
    return {int(k): str(v) for k, v in names.items()}


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """`image` (HxWx3 BGR uint8) scaled to fit `size` (h, w) keeping its aspect, centred on grey 114, as a
    1x3xHxW float32 RGB blob in 0..1; with the scale and the (x, y) padding, to map boxes back."""
    import cv2

    h, w = image.shape[:2]
    gain = min(size[0] / h, size[1] / w)
    nw, nh = round(w * gain), round(h * gain)
    padx, pady = (size[1] - nw) / 2, (size[0] - nh) / 2
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = round(pady - 0.1), round(padx - 0.1)
    canvas = np.full((size[0], size[1], 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = image
    blob = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) * (1 / 255)
    return np.ascontiguousarray(blob), gain, (left, top)


def decode(raw: np.ndarray, classes: list[int] | None, min_score: float, iou: float, max_det: int) -> np.ndarray:
    """YOLO detect head output (4 + nc, N) to (K, 6) rows x0, y0, x1, y1, score, class (network pixels)."""
    scores_all = raw[4:]
    cls = scores_all.argmax(0)  # each box's best class, then the class filter (as ultralytics does: a box
    score = scores_all[cls, np.arange(scores_all.shape[1])]  # that is mostly 'truck' is not kept as a 'car')
    wanted = score > min_score
    if classes is not None:
        wanted &= np.isin(cls, classes)
    keep = np.flatnonzero(wanted)
    if keep.size > MAX_NMS:
        keep = keep[np.argsort(-score[keep])[:MAX_NMS]]
    cx, cy, bw, bh = raw[:4, keep]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    score, cls = score[keep], cls[keep]
    picked = nms(boxes + (cls * MAX_WH)[:, None], score, iou)[:max_det]
    return np.concatenate([boxes[picked], score[picked, None], cls[picked, None]], axis=1).astype(np.float32)


def _end2end(raw: np.ndarray, classes: list[int] | None, min_score: float, max_det: int) -> np.ndarray:
    keep = raw[:, 4] > min_score
    if classes is not None:
        keep &= np.isin(raw[:, 5].astype(int), classes)
    rows = raw[keep]
    return rows[np.argsort(-rows[:, 4], kind="stable")][:max_det].copy()


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes (x0, y0, x1, y1), best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    while order.size:
        i = order[0]
        kept.append(i)
        rest = order[1:]
        w = (np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])).clip(0)
        h = (np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])).clip(0)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter + 1e-9) <= iou]
    return np.asarray(kept, dtype=np.intp)
