"""One camera's analysis: decoded frames -> motion, tamper, optional object detection -> messages.

Used alike by the service (frames from the bus) and by `sealcam motion scan` (frames from a file). The
object detector (sealcam/motion/objects.py: ultralytics/ONNX) is imported only when the camera's settings
configure one, so the motion service runs without torch or ultralytics installed.
"""

from __future__ import annotations

import collections
import importlib
import logging
from collections.abc import Callable
from typing import Any

from .decode import Frame
from .detector import MotionDetector, MotionParams
from .events import EventMachine, EventParams, Message, new_event_id
from .tamper import TamperMonitor, TamperParams

log = logging.getLogger("sealcam.motion")

DETECT_EVERY = 5  # object detection on at most every 5th frame with motion (1/s at 5 fps)


class ObjectsUnavailable(Exception):
    """Object detection is configured but its module or model cannot be loaded."""


def objects_enabled(cfg: Any) -> bool:
    """Is object detection configured by a camera's `objects` settings (sealcam.config.objects.ObjectsConfig)?"""
    return cfg is not None and getattr(cfg, "enabled", False) is True and getattr(cfg, "model", None) not in (None, "")


def load_object_detector(cfg: Any) -> tuple[Any, type[BaseException]] | None:
    """(detector, its error class) when configured, else None. Imports sealcam.motion.objects lazily."""
    if not objects_enabled(cfg):
        return None
    try:
        mod = importlib.import_module("sealcam.motion.objects")
    except ImportError as exc:
        raise ObjectsUnavailable(f"object detection is configured but cannot be imported: {exc}") from exc
    err: type[BaseException] = getattr(mod, "DetectorError", RuntimeError)
    try:
        return mod.load_detector(cfg), err
    except err as exc:
        raise ObjectsUnavailable(f"object detector could not be loaded: {exc}") from exc


class CameraPipeline:
    def __init__(self, camera: str, settings: Any, *, objects: tuple[Any, type[BaseException]] | None = None,
                 new_id: Callable[[], str] = new_event_id) -> None:
        self.camera = camera
        self.settings = settings
        self.params = MotionParams.from_settings(settings)
        self.tamper_on = bool(settings.tamper.enabled)
        self.tamper = TamperMonitor(TamperParams.from_settings(settings.tamper))
        self.objects, self._obj_error = objects if objects is not None else (None, RuntimeError)
        self.events = EventMachine(camera, EventParams.from_settings(settings, DETECT_EVERY),
                                   object_detection=self.objects is not None, new_id=new_id)
        self.detector: MotionDetector | None = None
        self.counters = collections.Counter[str]()
        self.last_at_us = 0

    def process(self, frame: Frame) -> list[Message]:
        h, w = frame.image.shape[:2]
        if self.detector is None or self.detector.frame_size != (w, h):
            self.detector = MotionDetector(self.params, (w, h))
        self.counters["frames"] += 1
        self.last_at_us = max(self.last_at_us, frame.capture_us)
        at = self.last_at_us  # never backwards, even across a decoder restart
        result = self.detector.process(frame.image)
        if result.motion:
            self.counters["motion_frames"] += 1
        if result.lighting:
            self.counters["lighting_changes"] += 1
        detections = None
        if self.objects is not None and self.events.wants_detection(result):
            try:
                detections = self.objects.detect(frame.image, result.pixel_boxes(w, h))
                self.counters["detections"] += 1
            except self._obj_error as exc:  # type: ignore[misc]
                self.counters["detector_errors"] += 1
                log.warning("motion[%s]: object detection failed: %s", self.camera, exc)
        out = self.events.step(at, result, frame.image, detections)
        if self.tamper_on and result.gray is not None:
            out += self.events.tamper(self.tamper.update(result.gray, at), frame.image)
        return out

    def finish(self) -> list[Message]:
        out = self.events.finish(self.last_at_us)
        self.tamper.finish(self.last_at_us)
        return out
