"""Config of object detection in the motion service: the `objects:` section and its per-camera override.

Kept apart from models.py so the motion service's detector code can import it without the rest of the config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .secrets import resolve_path

#: Model files the `ultralytics` backend loads (what ultralytics' AutoBackend accepts as one file); the
#: `onnx` backend loads only `.onnx`. A folder (OpenVINO `_openvino_model/`, TF SavedModel, NCNN, Paddle...)
#: is passed to ultralytics as is.
MODEL_SUFFIXES = (".pt", ".onnx", ".engine", ".torchscript", ".tflite", ".pb", ".mlpackage", ".mnn", ".rknn")
CLASS_NAME = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$"


def _path(value: Path | None, info: ValidationInfo) -> Path | None:
    return None if value is None else resolve_path(value, (info.context or {}).get("base_dir"))


def _device(value: str) -> str:
    if not re.fullmatch(r"cpu|cuda|cuda:[0-9]{1,2}|mps", value):
        raise PydanticCustomError("device", "device is cpu, cuda, cuda:N or mps")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


ClassNames = Annotated[list[Annotated[str, Field(pattern=CLASS_NAME)]], Field(min_length=1, max_length=256)]


class ObjectsConfig(_Model):
    enabled: bool = Field(default=False, description="Run object detection on frames with motion. Needs a model "
                          "file and the detect (torch) or detect-onnx extra installed.")
    model: Annotated[Path | None, AfterValidator(_path)] = Field(
        default=None, description="Model file or folder, supplied by you (nothing is downloaded): a YOLO .pt, "
        ".onnx, .engine (TensorRT), .torchscript, .tflite, OpenVINO folder... Required when enabled.")
    backend: Literal["auto", "ultralytics", "onnx"] = Field(
        default="auto", description="ultralytics: any format it loads, needs torch (detect extra); onnx: .onnx "
        "files on ONNX Runtime only (detect-onnx extra, no torch; for CPU and Raspberry Pi images); auto: onnx "
        "for .onnx files when onnxruntime is installed, else ultralytics.")
    device: Annotated[str, AfterValidator(_device)] = Field(
        default="cpu", max_length=8, description="cpu, cuda, cuda:N or mps (ultralytics); the onnx backend "
        "uses CUDAExecutionProvider for cuda when onnxruntime-gpu is installed.")
    imgsz: int = Field(default=320, ge=64, le=1920, multiple_of=32, description="Network input size, pixels, a "
                       "multiple of 32 (square, letterboxed). 320 is ~4x cheaper than 640; small distant objects "
                       "need more. A .onnx exported with a fixed size uses that size.")
    classes: ClassNames | None = Field(default=None, description="Class names to keep (e.g. [person, car]), "
                                       "as the model names them; null: every class of the model.")
    min_score: float = Field(default=0.4, ge=0.01, le=1.0, description="Lowest confidence kept.")
    iou: float = Field(default=0.45, ge=0.05, le=0.95, description="Non-maximum suppression IoU threshold.")
    max_detections: int = Field(default=50, ge=1, le=1000, description="Most detections returned per call.")
    region_margin: float = Field(default=0.15, ge=0, le=1, description="Each motion region is grown by this "
                                 "fraction of its size on every side before it is cropped for the detector.")
    max_regions: int = Field(default=3, ge=1, le=16, description="Most crops per call; more motion regions "
                             "than this (after merging overlapping ones), or crops covering most of the frame, "
                             "run the detector once on the whole frame instead.")
    threads: int | None = Field(default=None, ge=1, le=256, description="CPU threads for inference (torch / "
                                "ONNX Runtime intra-op); null: the runtime's default (all cores).")

    @field_validator("classes")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise PydanticCustomError("classes", "classes are listed twice")
        return v

    @model_validator(mode="after")
    def _model_when_enabled(self) -> ObjectsConfig:
        if self.enabled and self.model is None:
            raise PydanticCustomError("model", "objects.enabled needs objects.model: the path of a model file "
                                      "(nothing is downloaded; see docs/guide/object-detection.md)")
        return self

    def for_camera(self, override: CameraObjects | None) -> ObjectsConfig:
        """This config with a camera's overrides applied (fields the override leaves null are inherited)."""
        if override is None:
            return self
        changes = {k: v for k, v in override.model_dump().items() if v is not None}
        return type(self).model_validate({**self.model_dump(), **changes})


class CameraObjects(_Model):
    enabled: bool | None = Field(default=None, description="Turn object detection off (or on) for this camera; "
                                 "null: the top-level objects.enabled.")
    classes: ClassNames | None = Field(default=None, description="Class names kept for this camera; null: the "
                                       "top-level objects.classes.")
    min_score: float | None = Field(default=None, ge=0.01, le=1.0, description="Lowest confidence kept for this "
                                    "camera; null: the top-level objects.min_score.")
