"""From ffmpeg's fMP4 pieces to VideoFragment messages (pure: wall-clock readings are passed in).

`seq` is per camera and +1 per message, continuing across ffmpeg restarts (a reconnect shows as a new `init`
with the next seq; a jump in seq is a trim or a drop), so crypto can tell a reconnect from a gap.

Capture time: ffmpeg's decode times are relative to its own start. Each run is anchored once, at its first
media fragment: that fragment's first frame was captured about `duration` before it reached us, and not
before the process started. Later fragments get anchor + (decode_time - first decode_time) / timescale, so
their spacing is the camera's own clock. If that drifts more than `max_drift_us` from arrival-based time
(camera clock skew, a timestamp jump), the run is re-anchored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sealcam.bus.contract import VideoFragment
from sealcam.media.fmp4 import Fragment

US = 1_000_000


@dataclass
class FeedMapper:
    camera: str
    next_seq: int = 0
    max_drift_us: int = 3 * US
    start_us: int = field(default=0, init=False)
    _anchor_us: int | None = field(default=None, init=False)  # wall µs of decode time _t0
    _t0: int = field(default=0, init=False)  # first media fragment's decode time, in timescale units
    reanchors: int = field(default=0, init=False)

    def restart(self, start_us: int) -> None:
        """A new ffmpeg process started at wall-clock `start_us` (UTC µs); seq continues."""
        self.start_us = start_us
        self._anchor_us = None

    def _estimate(self, frag: Fragment, arrival_us: int) -> int:
        """Arrival-based capture time of the fragment's first frame."""
        dur_us = frag.duration * US // frag.timescale if frag.duration and frag.timescale else 0
        return max(self.start_us, arrival_us - dur_us)

    def capture_us(self, frag: Fragment, arrival_us: int) -> int:
        if frag.kind == "init":
            return self.start_us
        if frag.decode_time is None or not frag.timescale:
            return self._estimate(frag, arrival_us)
        if self._anchor_us is None:
            self._anchor_us, self._t0 = self._estimate(frag, arrival_us), frag.decode_time
        at = self._anchor_us + (frag.decode_time - self._t0) * US // frag.timescale
        est = self._estimate(frag, arrival_us)
        if abs(at - est) > self.max_drift_us:
            self._anchor_us, self._t0 = est, frag.decode_time
            self.reanchors += 1
            at = est
        return max(0, at)

    def map(self, frag: Fragment, arrival_us: int) -> VideoFragment:
        msg = VideoFragment(camera=self.camera, seq=self.next_seq, capture_us=self.capture_us(frag, arrival_us),
                            keyframe=frag.keyframe, kind=frag.kind, data=frag.data)
        self.next_seq += 1
        return msg
