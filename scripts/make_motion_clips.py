#!/usr/bin/env python3
"""Make short test clips with known ground truth for the motion detector (deterministic: seeded numpy + ffmpeg).

    python scripts/make_motion_clips.py OUTDIR [--size 320x180] [--fps 10] [--only NAME ...]

Each clip is OUTDIR/NAME.mp4 (H.264, a key frame every second, fragmented MP4 like the recorder's) with
OUTDIR/NAME.json: {"name", "kind": motion|none|tamper, "seconds", "fps", "size", "events": [[start, end]...],
"tamper": [[start, end, label]...]} (seconds from the clip's start; an object's event is from when it enters the
frame until it has left it, pauses included). Scenes: a textured background with sensor noise; objects of several
sizes and speeds; objects filling most of the frame (a person right past the lens, a truck); objects that differ
from the background in colour only; lighting ramps, a sudden light change and a day/night (IR) switch; camera
shake; a static scene; a covered lens; a moved camera; a person standing right in front of the lens (not a move).
The tests (tests/test_motion_eval.py) and bench/motion.py import this file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class Obj:
    t0: float  # enters (its leading edge at the frame's edge)
    speed: float  # frame widths per second
    size: float  # height as a fraction of the frame height
    y: float = 0.55  # centre, fraction of the frame height
    color: tuple[int, int, int] = (30, 30, 110)  # BGR; dark red clothes (motion is found in grey levels)
    aspect: float = 0.45  # width / height (a person); > 1: a car
    leftward: bool = False
    head: bool = True  # a darker band on top (a head, a cab), so it is not one flat block
    pause: float = 0.0  # seconds it stands still with its centre at the frame's centre
    sway_px: float = 0.0  # while paused it sways by this much (at 320 px width): nobody stands perfectly still

    def travel(self, t: float, w: int, ow: int) -> float:
        """Pixels its leading edge has travelled from the frame's edge at time t."""
        run = (t - self.t0) * self.speed * w
        centre = (w + ow) / 2
        if self.pause <= 0 or run <= centre:
            return run
        still = run - centre  # how far it would be past the centre without the pause
        if still <= self.pause * self.speed * w:
            return centre + self.sway_px * w / 320 * np.sin(2 * np.pi * (t - self.t0) / 1.7)
        return run - self.pause * self.speed * w


@dataclass
class Scene:
    name: str
    kind: str  # motion | none | tamper
    seconds: float
    objects: list[Obj] = field(default_factory=list)
    gain: Callable[[float], float] = lambda t: 1.0
    offset: Callable[[float], float] = lambda t: 0.0
    shake_px: float = 0.0  # at 320 px width
    noise: float = 3.0
    covered: tuple[float, float] | None = None
    moved_at: float | None = None
    ir_at: float | None = None  # day -> night (IR) switch: grey, washed-out contrast, vignette, more noise
    tamper_label: str = ""
    seed: int = 1

    def intervals(self, width: int) -> list[list[float]]:
        out = []
        for o in self.objects:
            w = o.size * o.aspect * 9 / 16  # object width as a fraction of the frame width (16:9)
            out.append([round(o.t0, 3), round(o.t0 + (1 + w) / o.speed + o.pause, 3)])
        return out


def scenes() -> list[Scene]:
    def ramp(t: float) -> float:  # 0.7 -> 1.3 over 12 s: dusk/dawn, clouds (fast, for a test)
        return 0.7 + 0.6 * min(1.0, t / 12)

    def step(t: float) -> float:  # a light switched on
        return 1.0 if t < 6 else 1.35

    return [
        Scene("person_slow", "motion", 24, [Obj(1, 0.12, 0.45), Obj(15, 0.2, 0.35, 0.6, (180, 170, 60), leftward=True)],
              seed=2),
        Scene("car_fast", "motion", 22, [Obj(1, 0.8, 0.3, 0.7, (30, 160, 220), 2.2),
                                         Obj(12, 1.2, 0.25, 0.6, (220, 220, 230), 2.5, True)], seed=3),
        Scene("small_far", "motion", 22, [Obj(1, 0.15, 0.16, 0.45, (30, 30, 30)),
                                          Obj(13, 0.25, 0.14, 0.5, (230, 230, 220), leftward=True)], seed=4),
        Scene("noisy_night", "motion", 20, [Obj(2, 0.2, 0.4, 0.55, (150, 150, 160))], noise=8.0,
              gain=lambda t: 0.45, seed=5),
        Scene("person_in_ramp", "motion", 22, [Obj(5, 0.2, 0.4)], gain=ramp, seed=6),
        Scene("static", "none", 16, seed=7),
        Scene("noise_only", "none", 16, noise=9.0, seed=8),
        Scene("lighting_ramp", "none", 20, gain=ramp, seed=9),
        Scene("light_switch", "none", 14, gain=step, seed=10),
        Scene("shake", "none", 16, shake_px=1.0, seed=11),
        Scene("covered", "tamper", 18, covered=(5, 13), tamper_label="covered", seed=12),
        Scene("moved", "tamper", 24, moved_at=6, tamper_label="moved", seed=13),
        # A person walking right past the lens, then a truck: each fills more than lighting_fraction (35 %).
        Scene("close_pass", "motion", 22, [Obj(1, 0.3, 1.6, 0.6, (40, 50, 60), 0.5),
                                           Obj(14, 0.5, 0.85, 0.55, (170, 175, 180), 3.0, True)], seed=14),
        # Same grey level as the road under them, another colour: a green car, a violet cyclist.
        Scene("colour_only", "motion", 22, [Obj(1, 0.3, 0.2, 0.87, (60, 120, 40), 2.0, head=False),
                                            Obj(12, 0.25, 0.22, 0.86, (120, 70, 140), 0.8, True, head=False)],
              seed=15),
        Scene("ir_switch", "none", 16, ir_at=6, seed=16),
        # Someone steps in front of the lens, stands (swaying) for 7 s, leaves: motion, not a moved camera.
        Scene("person_at_lens", "motion", 20, [Obj(2, 0.3, 1.5, 0.6, (60, 70, 90), 0.7, pause=7, sway_px=3)],
              seed=17),
    ]


def world(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A textured outdoor-ish background twice as wide as the frame (so the camera can be 'moved')."""
    ww = 2 * w
    img = np.zeros((h, ww, 3), np.float32)
    sky = np.linspace(170, 120, h // 3, dtype=np.float32)[:, None, None]
    img[: h // 3] = sky * np.array([1.0, 0.95, 0.85], np.float32)
    img[h // 3:] = np.array([70, 110, 90], np.float32)
    for _ in range(14):  # buildings, a fence, bushes
        x0 = int(rng.integers(0, ww - 20))
        bw, bh = int(rng.integers(w // 12, w // 4)), int(rng.integers(h // 5, h // 2))
        c = rng.integers(50, 200, 3).astype(np.float32)
        img[h - h // 4 - bh: h - h // 4, x0: x0 + bw] = c
        for _ in range(int(rng.integers(2, 6))):  # windows
            wx, wy = x0 + int(rng.integers(0, max(1, bw - 6))), h - h // 4 - bh + int(rng.integers(0, max(1, bh - 6)))
            img[wy: wy + 5, wx: wx + 4] = c * 0.5
    tex = cv2.resize(rng.normal(0, 10, (h // 8, ww // 8)).astype(np.float32), (ww, h), interpolation=cv2.INTER_CUBIC)
    img += tex[:, :, None]
    img[h - h // 4:] = np.array([90, 90, 95], np.float32) + tex[h - h // 4:, :, None] * 0.5  # the road
    return img


def frames(scene: Scene, w: int, h: int, fps: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(scene.seed)
    bg = world(rng, w, h)
    n = int(scene.seconds * fps)
    for i in range(n):
        t = i / fps
        x_off = 0 if scene.moved_at is None or t < scene.moved_at else int(0.6 * w)
        img = bg[:, x_off: x_off + w].copy()
        for o in scene.objects:
            oh = int(o.size * h)
            ow = max(2, int(oh * o.aspect))
            travel = o.travel(t, w, ow)
            if travel < 0 or travel > w + ow:
                continue
            x = int(travel - ow) if not o.leftward else int(w - travel)
            y = int(o.y * h - oh / 2)
            x0, x1, y0, y1 = max(0, x), min(w, x + ow), max(0, y), min(h, y + oh)
            if x1 > x0 and y1 > y0:
                img[y0:y1, x0:x1] = np.array(o.color, np.float32)
                if not o.head:
                    continue
                # a head / some structure, so it is not a flat block
                hy = max(0, y - oh // 6)
                img[hy: y0 + 1, max(0, x + ow // 4): max(0, min(w, x + 3 * ow // 4))] = np.array(o.color) * 0.7
        img = img * scene.gain(t) + scene.offset(t)
        noise = scene.noise
        if scene.ir_at is not None and t >= scene.ir_at:
            img, noise = infrared(img), max(noise, 7.0)
        if scene.shake_px:
            dx, dy = rng.uniform(-scene.shake_px, scene.shake_px, 2) * w / 320
            img = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
        if scene.covered and scene.covered[0] <= t < scene.covered[1]:
            img = np.full_like(img, 10.0)
        img += rng.normal(0, noise, img.shape).astype(np.float32)
        yield np.clip(img, 0, 255).astype(np.uint8)


def infrared(img: np.ndarray) -> np.ndarray:
    """A camera's night (IR) mode: no colour, foliage bright (it reflects near infrared), washed-out contrast,
    the illuminator's hot spot in the centre and dark corners."""
    h, w = img.shape[:2]
    grey = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
    b, g, r = cv2.split(img)
    grey *= np.where((g > b + 10) & (g > r + 10), 1.6, 1.0).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    out = (0.6 * grey + 0.4 * float(grey.mean()) + 20) * (1.3 - 0.3 * r2)
    return np.repeat(out[:, :, None], 3, axis=2)


def encode(path: Path, it: Iterator[np.ndarray], w: int, h: int, fps: int) -> None:
    argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
            "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-g", str(fps), "-threads", "1",
            "-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof", str(path)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for f in it:
        proc.stdin.write(f.tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed to encode {path}")


def truth(scene: Scene, w: int, h: int, fps: int) -> dict:
    tamper = []
    if scene.covered:
        tamper.append([*scene.covered, "covered"])
    if scene.moved_at is not None:
        tamper.append([scene.moved_at, scene.seconds, "moved"])
    return {"name": scene.name, "kind": scene.kind, "seconds": scene.seconds, "fps": fps, "size": [w, h],
            "events": scene.intervals(w), "tamper": tamper}


def make(outdir: Path, size: tuple[int, int] = (320, 180), fps: int = 10, only: list[str] | None = None) -> list[Path]:
    """Write the clips and their ground truth; returns the .mp4 paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    w, h = size
    out = []
    for sc in scenes():
        if only and sc.name not in only:
            continue
        mp4 = outdir / f"{sc.name}.mp4"
        encode(mp4, frames(sc, w, h, fps), w, h, fps)
        (outdir / f"{sc.name}.json").write_text(json.dumps(truth(sc, w, h, fps), indent=1) + "\n")
        out.append(mp4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--size", default="320x180", help="WxH (default %(default)s)")
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--only", nargs="*", help="scene names")
    a = ap.parse_args(argv)
    w, h = (int(x) for x in a.size.lower().split("x"))
    for p in make(a.outdir, (w, h), a.fps, a.only):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
