#!/usr/bin/env python3
"""Cost of motion detection: the detector per frame, and decoding a substream, against baselines run here.

    .venv/bin/python bench/motion.py            # 60 s of 640x360 video, 300 frames per detector measurement
    .venv/bin/python bench/motion.py --quick    # 20 s, 100 frames

Detector: ms per frame of `MotionDetector.process` (grey, blur, light compensation, shake-tolerant difference,
chroma difference at half size, blobs, background update) at 320x180 and 640x360 (analysis at that size), on
frames of a generated clip with a moving object, and the same grey only (`chroma_threshold=0`: what the chroma
term costs), and with a flat block over 60 % of each frame (a truck: the large-change path, structure check on
every frame); baseline: a plain `absdiff + threshold` against the previous grey frame on the same frames.
Decode: CPU seconds (user + sys of the ffmpeg child) per second of video for the service's ffmpeg command
(H.264 640x360 at 15 fps in, 5 fps of 640x360 BGR out), baseline: ffmpeg decoding the same file to null
(every frame, no scaling). Cameras per core at 5 fps = 1 / (decode CPU s per s + 5 x detector s per frame).
Times are the best of --repeat runs; one thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sealcam.motion.decode import ffmpeg_argv  # noqa: E402
from sealcam.motion.detector import MotionDetector, MotionParams  # noqa: E402

cv2.setNumThreads(1)


def clips_module():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("make_motion_clips", ROOT / "scripts" / "make_motion_clips.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def make_clip(path: Path, seconds: int, fps: int = 15) -> None:
    mod = clips_module()
    sc = mod.Scene("bench", "motion", seconds, [mod.Obj(1, 0.1, 0.4), mod.Obj(seconds / 2, 0.3, 0.3, leftward=True)])
    mod.encode(path, mod.frames(sc, 640, 360, fps), 640, 360, fps)


def frames_of(path: Path, size: tuple[int, int], n: int) -> list[np.ndarray]:
    w, h = size
    out = subprocess.run(ffmpeg_argv(5, w, h, source=str(path), fmt=None), capture_output=True, check=True).stdout
    arr = np.frombuffer(out, np.uint8)
    frames = [arr[i * w * h * 3:(i + 1) * w * h * 3].reshape(h, w, 3) for i in range(len(arr) // (w * h * 3))]
    return (frames * (n // max(1, len(frames)) + 1))[:n]


def time_detector(frames: list[np.ndarray], repeat: int, chroma_threshold: int = 12) -> float:
    h, w = frames[0].shape[:2]
    best = float("inf")
    for _ in range(repeat):
        det = MotionDetector(MotionParams(analysis_width=w, chroma_threshold=chroma_threshold), (w, h))
        t = time.perf_counter()
        for f in frames:
            det.process(f)
        best = min(best, (time.perf_counter() - t) / len(frames))
    return best


def with_truck(frames: list[np.ndarray]) -> list[np.ndarray]:
    """A flat grey block over 60 % of each frame, moving a little each frame (a truck right past the lens)."""
    out = []
    for i, f in enumerate(frames):
        g = f.copy()
        w = g.shape[1]
        x = (i * w // 50) % (w // 2)
        g[:, x: x + int(0.6 * w)] = 170
        out.append(g)
    return out


def time_baseline(frames: list[np.ndarray], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        prev = None
        t = time.perf_counter()
        for f in frames:
            g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
            if prev is not None:
                _, m = cv2.threshold(cv2.absdiff(g, prev), 25, 255, cv2.THRESH_BINARY)
                cv2.countNonZero(m)
            prev = g
        best = min(best, (time.perf_counter() - t) / len(frames))
    return best


def child_cpu(argv: list[str]) -> float:
    """CPU seconds (user + sys) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def time_decode(path: Path, seconds: int, repeat: int) -> tuple[float, float]:
    service = ffmpeg_argv(5, 640, 360)  # the live command, reading the file on stdin as the service does
    service_file = ["sh", "-c", shlex.join(service) + " < " + shlex.quote(str(path))]
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-threads", "1", "-i", str(path), "-f", "null", "-"]
    s = min(child_cpu(service_file) for _ in range(repeat)) / seconds
    b = min(child_cpu(base) for _ in range(repeat)) / seconds
    return s, b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    seconds, n = (20, 100) if a.quick else (60, 300)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, OpenCV {cv2.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "bench.mp4"
        make_clip(clip, seconds)
        print(f"clip: {seconds} s of 640x360 H.264 at 15 fps, {clip.stat().st_size / 1e6:.1f} MB")
        print(f"{'detector':<22}{'ms/frame':>10}{'baseline ms':>13}{'ratio':>8}")
        per_frame = {}
        for size in ((320, 180), (640, 360)):
            frames = frames_of(clip, size, n)
            d, b = time_detector(frames, a.repeat), time_baseline(frames, a.repeat)
            g = time_detector(frames, a.repeat, chroma_threshold=0)
            per_frame[size] = d
            print(f"{f'{size[0]}x{size[1]}':<22}{d * 1e3:>10.3f}{b * 1e3:>13.3f}{d / b:>8.2f}")
            print(f"{f'{size[0]}x{size[1]} grey only':<22}{g * 1e3:>10.3f}{b * 1e3:>13.3f}{g / b:>8.2f}"
                  f"   (chroma term: x{d / g:.2f})")
            t = time_detector(with_truck(frames), a.repeat)
            print(f"{f'{size[0]}x{size[1]} truck':<22}{t * 1e3:>10.3f}{b * 1e3:>13.3f}{t / b:>8.2f}"
                  "   (an object over 60 % of every frame)")
        dec, base = time_decode(clip, seconds, a.repeat)
        print(f"{'decode (CPU s / s)':<22}{dec:>10.4f}{base:>13.4f}{dec / base:>8.2f}   "
              "(service command vs ffmpeg -f null)")
        for size in ((320, 180), (640, 360)):
            load = dec + 5 * per_frame[size]
            print(f"cameras per core at 5 fps, analysis {size[0]}x{size[1]}: {1 / load:.0f} "
                  f"(decode {dec:.3f} + detector {5 * per_frame[size]:.4f} CPU s per s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
