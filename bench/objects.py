#!/usr/bin/env python3
"""Object detection cost per call: the ultralytics (torch) backend against the onnx (ONNX Runtime) backend.

    .venv/bin/python bench/objects.py                 # yolov8n built from ultralytics' yaml, 320 and 640
    .venv/bin/python bench/objects.py --model my.pt   # your own detect model (.pt; exported to ONNX in a temp dir)
    .venv/bin/python bench/objects.py --sizes 320 --repeat 50 --threads 2

Needs the detect and detect-onnx extras (scripts/setup.sh --test installs both). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sealcam.config.objects import ObjectsConfig  # noqa: E402
from sealcam.motion.objects import load_detector  # noqa: E402
from sealcam.motion.objects_onnx import letterbox  # noqa: E402
from sealcam.motion.objects_ultralytics import import_ultralytics_offline  # noqa: E402


def timed(fns: list[Callable[[], object]], repeat: int, warmup: int = 3) -> list[float]:
    """Median milliseconds per call of each of `fns`, called in turn (interleaved, so that load from other
    processes on the machine falls on all of them alike)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, samples, strict=True):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
    return [statistics.median(s) for s in samples]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a YOLO detect .pt (default: yolov8n.yaml, random weights)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640], help="network input sizes")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per figure (median printed)")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (default: the runtime's)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sealcam-bench-objects-"))
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp / "yolo-config"))
    os.environ.setdefault("YOLO_VERBOSE", "false")  # no export banners between the rows
    try:
        ul = import_ultralytics_offline()
        import cv2
        import onnxruntime
        import torch

        print(f"machine: {len(os.sched_getaffinity(0))} cpus, {platform.machine()}, python "
              f"{platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
              f"ultralytics {ul.__version__}; threads: {args.threads or 'all cpus'}")
        pt = tmp / "model.pt"
        if args.model:
            shutil.copy(args.model, pt)
        else:
            ul.YOLO("yolov8n.yaml").save(str(pt))
        print(f"model: {args.model or 'yolov8n.yaml (random weights: same compute, NMS has little to do)'}")
        frame = cv2.resize(cv2.imread(str(Path(ul.__file__).parent / "assets" / "bus.jpg")), (640, 360))
        region = [(200, 100, 360, 300)]
        print(f"frame 640x360 (bus.jpg); region call: one {region[0][2] - region[0][0]}x"
              f"{region[0][3] - region[0][1]} motion box (grown by the margin, letterboxed to the size)")
        print()
        print(f"{'size':>5} {'call':<7} {'torch ms':>9} {'ort ms':>8} {'torch/ort':>10} {'ort raw ms':>11} "
              f"{'ort/raw':>8}")
        for size in args.sizes:
            onnx = tmp / f"model-{size}.onnx"
            exported = ul.YOLO(str(pt)).export(format="onnx", imgsz=size, simplify=False, verbose=False)
            Path(exported).rename(onnx)
            base = ObjectsConfig(imgsz=size, min_score=0.25, threads=args.threads)
            torch_det = load_detector(base.model_copy(update={"model": pt, "backend": "ultralytics"}))
            ort_det = load_detector(base.model_copy(update={"model": onnx, "backend": "onnx"}))
            session = ort_det.engine.session
            blob = letterbox(frame, (size, size))[0]
            feed = {session.get_inputs()[0].name: blob}
            for name, regions in (("whole", []), ("region", region)):
                t_torch, t_ort, raw = timed([lambda d=torch_det, r=regions: d.detect(frame, r),
                                             lambda d=ort_det, r=regions: d.detect(frame, r),
                                             lambda s=session, f=feed: s.run(None, f)], args.repeat)
                print(f"{size:>5} {name:<7} {t_torch:>9.1f} {t_ort:>8.1f} {t_torch / t_ort:>10.2f} {raw:>11.1f} "
                      f"{t_ort / raw:>8.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
