"""Camera tampering from the analysis frames (pure: times come with the frames).

Per frame, a condition:

- covered: dark and near-uniform (mean < dark_level, std < uniform_std): a hand, tape, a bag over the camera;
- blinded: bright and near-uniform, or mostly saturated: a torch or laser into the lens;
- moved: the view no longer matches the reference view (normalised correlation of small edge-preserving
  thumbnails < moved_correlation), hardly any of the reference's texture is still in place, and the new view is
  itself steady. Correlation of mean-subtracted grey values ignores a global gain/offset, so a lighting ramp
  keeps it high; a passing object changes the view only while it moves, so it is not steady. "Still in place":
  per tile (8x6 tiles of the thumbnail), normalised correlation of its fine texture (the thumbnail minus its
  blur) with the reference's; when at least MATCHED_TILES of the reference's textured tiles still match, the
  camera looks where it did and something stands in front of it (a person right at the lens, a parked truck)
  or the light changed region by region (a day/night switch that brightens foliage): not moved.

A condition must hold `seconds` (moved: `moved_seconds`, a new view must persist) to be reported
(`TamperMonitor.update` returns the transitions). The reference
is the view after it has been steady and untampered for `reference_seconds`; after a reported move the new view
becomes the reference once it has held that long, which ends the event. A lost feed is reported by the
recorder (FeedEvent), not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SMALL = (64, 36)
SATURATED = 250
SATURATED_FRACTION = 0.8
STEADY_CORRELATION = 0.9
TILES = (8, 6)  # tiles of the thumbnail compared one by one
TILE_TEXTURE_VAR = 1.0  # fine-texture variance (grey levels² at thumbnail size) for a tile to count
TILE_MATCH = 0.6  # a tile whose fine texture correlates this much with the reference's is still in place
MATCHED_TILES = 0.15  # this share of the reference's textured tiles in place: not moved
CLEAR_SECONDS = 1.0
US = 1_000_000


@dataclass(frozen=True)
class TamperParams:
    dark_level: int = 24
    bright_level: int = 230
    uniform_std: float = 10.0
    moved_correlation: float = 0.5
    seconds: float = 3.0
    reference_seconds: float = 10.0
    moved_seconds: float = 10.0

    @classmethod
    def from_settings(cls, t) -> TamperParams:  # noqa: ANN001 - sealcam.config.motion.Tamper
        return cls(dark_level=t.dark_level, bright_level=t.bright_level, uniform_std=t.uniform_std,
                   moved_correlation=t.moved_correlation, seconds=t.seconds, reference_seconds=t.reference_seconds,
                   moved_seconds=t.moved_seconds)


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Normalised cross-correlation of two equal-size float images; None when either is (near) uniform."""
    am, bm = a - a.mean(), b - b.mean()
    den = float(np.sqrt((am * am).sum() * (bm * bm).sum()))
    if den < 1e-3 * a.size:
        return None
    return float((am * bm).sum() / den)


def fine_texture(small: np.ndarray) -> np.ndarray:
    """The thumbnail minus its blur: edges and texture, without gradients and region-wide brightness."""
    return small - cv2.GaussianBlur(small, (0, 0), 2.0)


def matched_tiles(small: np.ndarray, ref: np.ndarray) -> float | None:
    """Share of the reference's textured tiles whose fine texture is still in place in `small` (normalised
    correlation >= TILE_MATCH); None when the reference has no textured tile."""
    a, b = fine_texture(small), fine_texture(ref)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, TILES, interpolation=cv2.INTER_AREA)

    ma, mb = mean(a), mean(b)
    va, vb = mean(a * a) - ma * ma, mean(b * b) - mb * mb
    ncc = (mean(a * b) - ma * mb) / np.sqrt(np.maximum(va, TILE_TEXTURE_VAR) * np.maximum(vb, TILE_TEXTURE_VAR))
    textured = vb > TILE_TEXTURE_VAR
    n = int(np.count_nonzero(textured))
    return None if n == 0 else int(np.count_nonzero(textured & (ncc >= TILE_MATCH))) / n


def classify(gray: np.ndarray, p: TamperParams) -> str | None:
    """covered / blinded from one grey frame, or None."""
    mean, std = cv2.meanStdDev(gray)
    m, s = float(mean[0, 0]), float(std[0, 0])
    if m < p.dark_level and s < p.uniform_std:
        return "covered"
    if (m > p.bright_level and s < p.uniform_std) or \
            np.count_nonzero(gray >= SATURATED) > SATURATED_FRACTION * gray.size:
        return "blinded"
    return None


@dataclass(frozen=True)
class Transition:
    label: str  # covered | blinded | moved
    phase: str  # start | end
    at_us: int  # the frame at which it is decided
    since_us: int  # start: when the condition began; end: when it was last seen


class TamperMonitor:
    def __init__(self, params: TamperParams) -> None:
        self.p = params
        self.ref: np.ndarray | None = None
        self.candidate: np.ndarray | None = None  # a steady view waiting to become the reference
        self.candidate_since = 0
        self.cond: str | None = None  # condition of the current run of frames
        self.cond_since = 0
        self.active: str | None = None  # reported and not yet ended
        self.active_last = 0  # last frame that showed the active condition
        self.moved_view: np.ndarray | None = None
        self.last_corr: float | None = None
        self.last_matched: float | None = None  # share of the reference's tiles in place (when corr was low)

    def _small(self, gray: np.ndarray) -> np.ndarray:
        return cv2.resize(gray, SMALL, interpolation=cv2.INTER_AREA).astype(np.float32)

    def condition(self, gray: np.ndarray, at_us: int) -> tuple[str | None, np.ndarray]:
        small = self._small(gray)
        label = classify(gray, self.p)
        if label is not None or self.ref is None:
            return label, small
        corr = correlation(small, self.ref)
        self.last_corr = corr
        if corr is None or corr >= self.p.moved_correlation:
            self.moved_view = None
            return None, small
        # Much of the reference's texture still in place: something in front of the lens, or relit; not moved.
        self.last_matched = matched_tiles(small, self.ref)
        if self.last_matched is not None and self.last_matched >= MATCHED_TILES:
            self.moved_view = None
            return None, small
        # Low correlation with the reference: "moved" only while the new view is steady.
        if self.moved_view is None:
            self.moved_view = small
            return None, small
        steady = correlation(small, self.moved_view)
        if steady is None or steady < STEADY_CORRELATION:
            self.moved_view = small
            return None, small
        return "moved", small

    def update(self, gray: np.ndarray, at_us: int) -> list[Transition]:
        label, small = self.condition(gray, at_us)
        out: list[Transition] = []
        if label != self.cond:
            self.cond, self.cond_since = label, at_us
        if self.active is not None:
            if label == self.active:
                self.active_last = at_us
            elif at_us - self.active_last >= CLEAR_SECONDS * US:
                out.append(Transition(self.active, "end", at_us, self.active_last))
                self.active = None
        hold = self.p.moved_seconds if label == "moved" else self.p.seconds
        if label is not None and label != self.active and at_us - self.cond_since >= hold * US:
            if self.active is not None:
                out.append(Transition(self.active, "end", at_us, self.active_last))
            self.active, self.active_last = label, at_us
            out.append(Transition(label, "start", at_us, self.cond_since))
        self._track_reference(label, small, at_us)
        return out

    def finish(self, at_us: int) -> list[Transition]:
        """End of input: end an active report."""
        if self.active is None:
            return []
        out = [Transition(self.active, "end", at_us, self.active_last)]
        self.active = None
        return out

    def _track_reference(self, label: str | None, small: np.ndarray, at_us: int) -> None:
        """The reference is a view that held (steady, not covered/blinded) for reference_seconds."""
        if label in ("covered", "blinded"):
            self.candidate = None
            return
        if self.ref is None:  # the first usable view, until a steady one replaces it
            self.ref = small
        if self.candidate is None:
            self.candidate, self.candidate_since = small, at_us
            return
        c = correlation(small, self.candidate)
        if c is None or c < STEADY_CORRELATION:
            self.candidate, self.candidate_since = small, at_us
            return
        if at_us - self.candidate_since >= self.p.reference_seconds * US:
            if (self.active == "moved" and label == "moved") or (self.active is None and label is None):
                self.ref = self.candidate
                self.moved_view = None
            self.candidate, self.candidate_since = small, at_us
