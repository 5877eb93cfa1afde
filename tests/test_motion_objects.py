"""Object detection without a model: crop planning, class selection, ONNX decoding and NMS, letterbox mapping,
the config section, and the errors of load_detector (missing file, wrong format, missing package).

The backends on real models are in test_motion_objects_models.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from sealcam.config.objects import CameraObjects, ObjectsConfig
from sealcam.motion import objects
from sealcam.motion.objects import Detection, DetectorError, check_model_path, choose_backend, load_detector
from sealcam.motion.objects_onnx import decode, letterbox, nms, parse_names
from sealcam.motion.objects_regions import MIN_CROP, RegionDetector, class_ids, plan_crops

# --- plan_crops ------------------------------------------------------------------------------------


def test_no_regions_is_the_whole_frame() -> None:
    assert plan_crops([], 640, 360, 0.15, 3) == [(0, 0, 640, 360)]


def test_region_grows_by_margin_and_stays_in_frame() -> None:
    assert plan_crops([(100, 100, 200, 300)], 640, 360, 0.1, 3) == [(90, 80, 210, 320)]
    # at the edge: clipped to the frame
    assert plan_crops([(0, 0, 100, 100)], 640, 360, 0.5, 3) == [(0, 0, 150, 150)]


def test_small_region_widened_to_min_crop_inside_frame() -> None:
    (crop,) = plan_crops([(630, 350, 636, 356)], 640, 360, 0.0, 3)
    x0, y0, x1, y1 = crop
    assert (x1 - x0, y1 - y0) == (MIN_CROP, MIN_CROP)
    assert x1 == 640 and y1 == 360  # pushed back inside, not cut
    assert x0 <= 630 and y0 <= 350  # still holds the region


def test_overlapping_regions_merge_disjoint_ones_stay() -> None:
    crops = plan_crops([(10, 10, 100, 100), (90, 90, 180, 180), (400, 10, 500, 100)], 1280, 720, 0.0, 3)
    assert crops == [(10, 10, 180, 180), (400, 10, 500, 100)]
    # merging can chain: a merged box may newly overlap a third one
    chain = plan_crops([(0, 0, 100, 100), (300, 0, 400, 100), (90, 20, 310, 100)], 1280, 720, 0.0, 3)
    assert chain == [(0, 0, 400, 100)]


def test_too_many_or_too_large_regions_run_the_whole_frame() -> None:
    regions = [(i * 150, 0, i * 150 + 80, 80) for i in range(4)]
    assert plan_crops(regions, 1280, 720, 0.0, 3) == [(0, 0, 1280, 720)]
    assert len(plan_crops(regions, 1280, 720, 0.0, 4)) == 4
    assert plan_crops([(0, 0, 600, 600)], 640, 640, 0.0, 3) == [(0, 0, 640, 640)]


def test_empty_and_outside_regions_are_ignored() -> None:
    assert plan_crops([(50, 50, 50, 80), (700, 10, 800, 50)], 640, 360, 0.1, 3) == [(0, 0, 640, 360)]
    # reversed corners are normalised
    assert plan_crops([(200, 300, 100, 100)], 640, 360, 0.0, 3) == [(100, 100, 200, 300)]


# --- class selection, names ------------------------------------------------------------------------

NAMES = {0: "person", 1: "bicycle", 2: "car"}


def test_class_ids_by_name_case_insensitive() -> None:
    assert class_ids(None, NAMES, "m.pt") is None
    assert class_ids(["Car", "person"], NAMES, "m.pt") == [0, 2]


def test_unknown_class_is_an_error_listing_the_model_classes() -> None:
    with pytest.raises(DetectorError, match=r"\['dog'\].*m\.pt.*person, bicycle, car"):
        class_ids(["person", "dog"], NAMES, "m.pt")


def test_parse_names_from_onnx_metadata() -> None:
    assert parse_names("{0: 'person', 1: 'bicycle'}", Path("m.onnx")) == {0: "person", 1: "bicycle"}
    assert parse_names("['a', 'b']", Path("m.onnx")) == {0: "a", 1: "b"}
    with pytest.raises(DetectorError, match="no 'names' metadata"):
        parse_names(None, Path("m.onnx"))
    with pytest.raises(DetectorError, match="cannot read"):
        parse_names("{0: person}", Path("m.onnx"))


# --- ONNX output decoding, NMS, letterbox ----------------------------------------------------------


def _head(boxes: list[tuple[float, float, float, float]], scores: list[list[float]]) -> np.ndarray:
    """A detect head output (4 + nc, N) from xyxy boxes and per-class scores."""
    b = np.array(boxes, np.float32)
    xywh = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
    return np.concatenate([xywh, np.array(scores, np.float32).T])


def test_decode_thresholds_suppresses_and_filters_classes() -> None:
    raw = _head(
        [(10, 10, 50, 50), (12, 12, 52, 52), (100, 100, 150, 150), (11, 11, 51, 51), (200, 200, 210, 210)],
        [[0.9, 0.1, 0.0], [0.8, 0.0, 0.1], [0.0, 0.0, 0.7], [0.0, 0.0, 0.6], [0.2, 0.0, 0.0]],
    )
    rows = decode(raw, None, 0.25, 0.45, 100)
    assert rows.dtype == np.float32 and rows.shape == (3, 6)
    # the second person box overlaps the first and goes; the car on top of the person stays (other class)
    assert rows[:, 5].tolist() == [0, 2, 2]
    np.testing.assert_allclose(rows[0], [10, 10, 50, 50, 0.9, 0])
    np.testing.assert_allclose(rows[1, :5], [100, 100, 150, 150, 0.7])
    cars = decode(raw, [2], 0.25, 0.45, 100)
    assert cars[:, 5].tolist() == [2, 2]
    # a box is kept under its best class only: box 1 (person 0.8, car 0.1) is not a car
    assert decode(raw, [2], 0.05, 0.45, 100)[:, 4].tolist() == pytest.approx([0.7, 0.6])
    assert decode(raw, None, 0.75, 0.45, 100)[:, 4].tolist() == pytest.approx([0.9])
    assert decode(raw, None, 0.95, 0.45, 100).shape == (0, 6)
    assert decode(raw, None, 0.25, 0.45, 1).shape == (1, 6)
    assert decode(raw, [1], 0.25, 0.45, 100).shape == (0, 6)


def test_nms_keeps_best_of_overlapping() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.4], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 2, 0]  # identical boxes 0 and 3 still collapse
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_letterbox_maps_back() -> None:
    image = np.zeros((120, 200, 3), np.uint8)
    image[30:60, 50:100] = (0, 0, 255)  # a red block, BGR
    blob, gain, (padx, pady) = letterbox(image, (320, 320))
    assert blob.shape == (1, 3, 320, 320) and blob.dtype == np.float32
    assert gain == pytest.approx(1.6) and (padx, pady) == (0, 64)
    red = np.argwhere(blob[0, 0] > 0.9)  # channel 0 is R after BGR -> RGB
    y0, x0 = red.min(0)
    y1, x1 = red.max(0) + 1
    assert ((x0 - padx) / gain, (y0 - pady) / gain) == pytest.approx((50, 30), abs=1)
    assert ((x1 - padx) / gain, (y1 - pady) / gain) == pytest.approx((100, 60), abs=1)
    assert blob[0, :, 0, 0] == pytest.approx([114 / 255] * 3)  # padding grey


# --- RegionDetector mapping ------------------------------------------------------------------------


class _BoxEachCrop:
    """An engine finding one 'person' at fixed pixels (10, 20)-(30, 60) of every image it is given."""

    names = NAMES

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def infer(self, images: list[np.ndarray], classes: list[int] | None, min_score: float, iou: float,
              max_det: int) -> list[np.ndarray]:
        self.shapes += [i.shape for i in images]
        return [np.array([[10, 20, 30, 60, 0.5 + k / 10, 0]], np.float32) for k in range(len(images))]


def test_region_detector_maps_crop_boxes_to_frame_fractions() -> None:
    engine = _BoxEachCrop()
    det = RegionDetector(engine, ObjectsConfig(region_margin=0.0))
    frame = np.zeros((400, 800, 3), np.uint8)
    out = det.detect(frame, [(100, 100, 200, 200), (500, 200, 600, 300)])
    assert engine.shapes == [(100, 100, 3), (100, 100, 3)]
    assert out == [
        Detection("person", pytest.approx(0.6), pytest.approx((510 / 800, 220 / 400, 530 / 800, 260 / 400))),
        Detection("person", pytest.approx(0.5), pytest.approx((110 / 800, 120 / 400, 130 / 800, 160 / 400))),
    ]
    whole = det.detect(frame, [])
    assert engine.shapes[-1] == (400, 800, 3)
    assert whole[0].box == pytest.approx((10 / 800, 20 / 400, 30 / 800, 60 / 400))


def test_region_detector_rejects_bad_frames() -> None:
    det = RegionDetector(_BoxEachCrop(), ObjectsConfig())
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 10, 3), np.uint8)):
        with pytest.raises(DetectorError, match="HxWx3 uint8 BGR"):
            det.detect(bad, [])


# --- config ----------------------------------------------------------------------------------------


def test_config_defaults_and_limits(tmp_path: Path) -> None:
    cfg = ObjectsConfig.model_validate({"model": "m.onnx"}, context={"base_dir": tmp_path})
    assert cfg.model == tmp_path / "m.onnx" and cfg.enabled is False and cfg.imgsz == 320
    for bad in ({"imgsz": 100}, {"device": "gpu"}, {"min_score": 0}, {"classes": ["a", "a"]}, {"colour": 1},
                {"enabled": True}):
        with pytest.raises(ValidationError):
            ObjectsConfig.model_validate(bad)


def test_camera_override() -> None:
    top = ObjectsConfig(enabled=True, model=Path("/m.pt"), classes=["person"], min_score=0.5)
    assert top.for_camera(None) is top
    cam = top.for_camera(CameraObjects(classes=["car"], min_score=0.3))
    assert (cam.enabled, cam.model, cam.classes, cam.min_score) == (True, Path("/m.pt"), ["car"], 0.3)
    assert top.for_camera(CameraObjects(enabled=False)).enabled is False
    with pytest.raises(ValidationError, match="needs objects.model"):
        ObjectsConfig().for_camera(CameraObjects(enabled=True))


def test_camera_enabling_objects_without_model_is_a_config_error(tmp_path: Path) -> None:
    from sealcam.config.models import Config

    base = {
        "cameras": [{"id": "door", "inputs": [{"url": "synthetic://a", "roles": ["record"]}],
                     "objects": {"enabled": True}}],
        "recipients": ["./r.pub"],
        "storage": [{"type": "local", "path": "./out"}],
        "hub": {"signing_key_file": "./hub.key"},
    }
    with pytest.raises(ValidationError, match="cameras door enable objects but objects.model is not set"):
        Config.model_validate(base, context={"base_dir": tmp_path})
    cfg = Config.model_validate({**base, "objects": {"model": "m.onnx", "classes": ["person"]}},
                                context={"base_dir": tmp_path})
    door = cfg.objects_for("door")
    assert door.enabled and door.model == tmp_path / "m.onnx" and door.classes == ["person"]
    assert cfg.section_for("motion")["objects"] == {"door": door}


# --- load_detector errors --------------------------------------------------------------------------


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "yolov8n.pt"
    with pytest.raises(DetectorError, match=f"model file {missing} does not exist.*downloads nothing"):
        load_detector(ObjectsConfig(enabled=True, model=missing))
    with pytest.raises(DetectorError, match="objects.model is not set"):
        load_detector(ObjectsConfig())


def test_unsupported_format_is_a_clear_error(tmp_path: Path) -> None:
    weird = tmp_path / "model.h5"
    weird.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match=r"unsupported model format '\.h5' for .*model\.h5.*\.pt, \.onnx"):
        load_detector(ObjectsConfig(enabled=True, model=weird))
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"x")
    with pytest.raises(DetectorError, match="backend onnx loads .onnx files only"):
        load_detector(ObjectsConfig(enabled=True, model=pt, backend="onnx"))
    assert check_model_path(tmp_path) == tmp_path  # an exported model folder goes to ultralytics as is
    assert choose_backend("auto", tmp_path) == "ultralytics"


def test_garbage_onnx_file_is_a_detector_error(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(DetectorError, match=f"cannot load ONNX model {bad}"):
        load_detector(ObjectsConfig(enabled=True, model=bad, backend="onnx"))


def test_missing_package_names_the_extra() -> None:
    with pytest.raises(DetectorError, match="needs the Python package 'no_such_runtime_pkg'.*'detect-onnx' extra"):
        objects._require("no_such_runtime_pkg", "the onnx backend", "detect-onnx")
