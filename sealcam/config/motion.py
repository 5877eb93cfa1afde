"""Motion detection settings: a top-level `motion:` default and an optional per-camera `motion:` override.

A camera's effective settings are the top-level block with the keys the camera's block sets replacing it, one
key at a time (`effective_motion`); a nested block given on the camera (`tamper`) replaces the top-level one
whole. Zones and masks are polygons, as fractions of the frame (0..1) or as pixels of a reference image size.
Object detection has its own models (`objects:` at the top level and per camera): sealcam/config/objects.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from .models import Camera, Config

NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


Point = tuple[float, float]


class Polygon(_Model):
    name: str = Field(default="zone", pattern=NAME, description="Name shown in events (`detail.zones`).")
    points: list[Point] = Field(min_length=3, max_length=64, description="Corners [x, y] in order: fractions of "
                                "the frame (0..1) unless `size` is given, then pixels of a `size` image.")
    size: tuple[int, int] | None = Field(default=None, description="[width, height] of the image the pixel "
                                         "`points` were taken from (1..7680 x 1..4320). null: points are "
                                         "fractions.")

    @model_validator(mode="after")
    def _check(self) -> Polygon:
        w, h = (1.0, 1.0) if self.size is None else (float(self.size[0]), float(self.size[1]))
        if self.size is not None and not (1 <= self.size[0] <= 7680 and 1 <= self.size[1] <= 4320):
            raise PydanticCustomError("polygon", "size must be [width, height] within 1..7680 x 1..4320")
        for i, (x, y) in enumerate(self.points):
            if not (0 <= x <= w and 0 <= y <= h):
                unit = "fractions 0..1" if self.size is None else f"pixels within {self.size[0]}x{self.size[1]}"
                raise PydanticCustomError("polygon", "point {i} [{x}, {y}] is outside the frame ({unit})",
                                          {"i": i, "x": x, "y": y, "unit": unit})
        area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(self.points, self.points[1:] + self.points[:1],
                                                                         strict=True))
        if abs(area2) / 2 < 1e-4 * w * h:
            raise PydanticCustomError("polygon", "polygon {name!r} has (almost) no area", {"name": self.name})
        return self

    def fractions(self) -> list[Point]:
        """The corners as fractions of the frame."""
        if self.size is None:
            return list(self.points)
        return [(x / self.size[0], y / self.size[1]) for x, y in self.points]


class Tamper(_Model):
    enabled: bool = Field(default=True, description="Report a covered, blinded or moved camera (MotionEvent kind "
                          "tamper).")
    dark_level: int = Field(default=24, ge=0, le=128, description="covered: mean brightness (0..255) below this "
                            "with a near-uniform frame.")
    bright_level: int = Field(default=230, ge=128, le=255, description="blinded: mean brightness above this with "
                              "a near-uniform frame.")
    uniform_std: float = Field(default=10.0, ge=0, le=64, description="Near-uniform: standard deviation of "
                               "brightness (0..255) below this.")
    moved_correlation: float = Field(default=0.5, ge=0, le=1, description="moved: correlation with the reference "
                                     "view below this (a lighting change keeps it, a move does not); moved also "
                                     "needs most of the reference's fine texture gone (an object in front of the "
                                     "lens leaves the rest of the view in place).")
    seconds: float = Field(default=3.0, ge=0.2, le=600, description="A tamper condition must hold this long "
                           "before it is reported.")
    reference_seconds: float = Field(default=10.0, ge=1, le=3600, description="The reference view is the scene "
                                     "after it has been steady (not tampered) this long.")
    moved_seconds: float = Field(default=10.0, ge=0.2, le=3600, description="moved: the new view must hold (steady, "
                                 "with hardly any of the reference's texture in place) this long before it is "
                                 "reported; a person standing right in front of the lens leaves sooner.")


class MotionSettings(_Model):
    enabled: bool = Field(default=True, description="Run motion detection on this camera.")
    detect_fps: float = Field(default=5.0, ge=0.5, le=30, description="Frames per second decoded and analysed.")
    detect_width: int = Field(default=640, ge=64, le=1920, description="Width of decoded frames (thumbnails and "
                              "object detection use them), pixels.")
    detect_height: int | None = Field(default=None, ge=36, le=1080, description="Height of decoded frames. null: "
                                      "keep the stream's aspect ratio.")
    analysis_width: int = Field(default=320, ge=32, le=1920, description="Frames are shrunk to this width for "
                                "motion analysis (cost grows with its square).")
    threshold: int = Field(default=25, ge=1, le=255, description="Brightness difference (0..255) from the "
                           "background that counts as changed.")
    blur: int = Field(default=5, ge=0, le=31, description="Gaussian blur kernel (odd pixels at analysis size; 0: "
                      "none) against sensor noise.")
    min_area: float = Field(default=0.002, ge=0, le=1, description="Smallest moving blob, as a fraction of the "
                            "frame area.")
    learning_rate: float = Field(default=0.05, gt=0, le=1, description="How fast the background follows the "
                                 "scene (per analysed frame; 0.05 at 5 fps: about 4 s).")
    lighting_fraction: float = Field(default=0.35, ge=0.05, le=1, description="When more than this fraction of "
                                     "the frame changes at once and the scene's structure (local texture) is "
                                     "mostly kept, it is a lighting change: the background is re-learnt and no "
                                     "motion is reported. A change that replaces the structure (a person right "
                                     "past the lens, a truck) is motion.")
    chroma_threshold: int = Field(default=12, ge=0, le=255, description="Colour difference (Cr/Cb, 0..255) from "
                                  "the background that counts as changed, so objects of the background's grey "
                                  "level but another colour are seen. 0: grey levels only.")
    min_frames: int = Field(default=2, ge=1, le=100, description="Frames with motion needed to start an event.")
    min_seconds: float = Field(default=0.3, ge=0, le=60, description="Motion must last this long to start an "
                               "event.")
    end_seconds: float = Field(default=5.0, ge=0.5, le=600, description="An event ends after this long without "
                               "motion.")
    max_event_seconds: float = Field(default=300.0, ge=5, le=86400, description="An event is cut after this "
                                     "long; motion that goes on starts a new one.")
    update_seconds: float = Field(default=2.0, ge=0.2, le=3600, description="At most one update message per "
                                  "event this often (when labels or the best score change).")
    zones: list[Polygon] = Field(default_factory=list, max_length=32, description="Only motion inside these "
                                 "polygons counts. Empty: the whole frame.")
    masks: list[Polygon] = Field(default_factory=list, max_length=32, description="Motion inside these polygons "
                                 "is ignored (a road, a tree, a timestamp overlay).")
    tamper: Tamper = Field(default_factory=Tamper, description="Camera tampering detection.")

    @model_validator(mode="after")
    def _check(self) -> MotionSettings:
        if self.blur and self.blur % 2 == 0:
            raise PydanticCustomError("blur", "blur must be odd (or 0 for none), got {b}", {"b": self.blur})
        if self.analysis_width > self.detect_width:
            self.analysis_width = self.detect_width
        return self


def effective_motion(config: Config, camera: Camera) -> MotionSettings:
    """The camera's settings: the top-level block with the keys set in the camera's own block replacing it."""
    base: MotionSettings = config.motion
    own: MotionSettings | None = camera.motion
    if own is None:
        return base
    update: dict[str, Any] = {k: getattr(own, k) for k in own.model_fields_set}
    return MotionSettings.model_validate(base.model_dump() | {k: _dump(v) for k, v in update.items()})


def _dump(v: Any) -> Any:
    if isinstance(v, BaseModel):
        return v.model_dump()
    if isinstance(v, list):
        return [_dump(i) for i in v]
    return v
