"""Decoding camera video into small BGR frames with an ffmpeg subprocess (the only place bitstreams are parsed).

The recorder's fMP4 pieces (an init segment, then media fragments) are written to ffmpeg's stdin, which
decodes, drops to `fps` frames per second, scales to `width`x`height` and writes raw BGR frames to stdout:

    ffmpeg -hide_banner -loglevel error -nostdin -f mp4 -i pipe:0 -vf fps=N,scale=W:H -pix_fmt bgr24
           -f rawvideo pipe:1

Hostile bitstreams are parsed by ffmpeg in its own process (no network in the motion service's box; it could
be further confined with seccomp or a user namespace, see docs/design/motion.md), never by Python code here:
this module reads only box headers of the init segment (frame size) via bounded parsing.

Timestamps: ffmpeg starts its output clock at 0 on the first frame, and the fps filter puts frame k at k/fps.
So frame k of a run is media time `t0 + k/fps`, t0 being the first fed fragment's decode time; it maps to
wall-clock capture time through the fragment it falls in (`capture_us + offset`). A new init segment (a
recorder restart) or a gap in `seq` restarts ffmpeg, so one run's media time is continuous. After a restart
media fragments are skipped until a key frame. Buffers are bounded: fragments waiting for ffmpeg (dropped when
full: a gap) and decoded frames waiting for the detector (oldest dropped when full).
"""

from __future__ import annotations

import collections
import logging
import queue
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from sealcam.bus.contract import VideoFragment
from sealcam.media.fmp4 import Fmp4Error, iter_fragments

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("sealcam.motion")

US = 1_000_000
MAX_PENDING_FRAGMENTS = 16
MAX_QUEUED_FRAMES = 64
STOP_GRACE_S = 3.0


class DecodeError(Exception):
    """ffmpeg could not be started or the input is unusable."""


@dataclass(frozen=True)
class Frame:
    capture_us: int  # UTC µs of this frame (from the fragment it falls in); seconds * 1e6 for files
    image: np.ndarray = field(repr=False)  # HxWx3 uint8 BGR
    media_s: float = 0.0  # media time within the decoder run


def ffmpeg_argv(fps: float, width: int, height: int, source: str = "pipe:0", fmt: str | None = "mp4") -> list[str]:
    argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    if fmt:
        argv += ["-f", fmt]
    if source == "pipe:0":  # live input: start decoding at once, do not read seconds ahead to probe
        argv += ["-probesize", "32", "-analyzeduration", "0"]
    argv += ["-threads", "1"]  # one core per camera at most; no frame-threading delay
    return [*argv, "-i", source, "-map", "0:v:0", "-an", "-vf", f"fps={fps:g},scale={width}:{height}",
            "-pix_fmt", "bgr24", "-f", "rawvideo", "pipe:1"]


def video_size(init: bytes) -> tuple[int, int] | None:
    """(width, height) of the first video track from an init segment's tkhd, or None if it cannot be read."""

    def boxes(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
        pos = start
        while pos + 8 <= end:
            size, btype = struct.unpack_from(">I4s", buf, pos)
            hdr = 8
            if size == 1 and pos + 16 <= end:
                size, hdr = struct.unpack_from(">Q", buf, pos + 8)[0], 16
            if size < hdr or pos + size > end:
                return
            yield btype, pos + hdr, pos + size
            pos += size

    for btype, s, e in boxes(init, 0, len(init)):
        if btype != b"moov":
            continue
        for t2, s2, e2 in boxes(init, s, e):
            if t2 != b"trak":
                continue
            kids = {t: (a, b) for t, a, b in boxes(init, s2, e2)}
            mdia = kids.get(b"mdia")
            tkhd = kids.get(b"tkhd")
            if mdia is None or tkhd is None:
                continue
            hdlr = next(((a, b) for t, a, b in boxes(init, *mdia) if t == b"hdlr"), None)
            if hdlr is None or init[hdlr[0] + 8: hdlr[0] + 12] != b"vide" or tkhd[1] - tkhd[0] < 84:
                continue
            w, h = struct.unpack_from(">II", init, tkhd[1] - 8)
            w, h = w >> 16, h >> 16
            return (w, h) if w > 0 and h > 0 else None
    return None


def frame_size(source: tuple[int, int] | None, width: int, height: int | None) -> tuple[int, int]:
    """Decoded frame size: `width` x `height`, or `height` from the source's aspect ratio (16:9 if unknown).
    Both even (what ffmpeg's scalers like best)."""
    if height is None:
        sw, sh = source or (16, 9)
        height = round(width * sh / sw)
    return max(2, width - width % 2), max(2, height - height % 2)


@dataclass
class _Span:
    start_s: float  # fragment's decode time, seconds
    end_s: float | None  # start + duration when known
    capture_us: int


class FragmentClock:
    """Media time of a decoder run -> capture time, from the fragments fed (pure)."""

    def __init__(self, keep: int = 256) -> None:
        self.spans: collections.deque[_Span] = collections.deque(maxlen=keep)
        self.t0: float | None = None

    def add(self, start_s: float, duration_s: float | None, capture_us: int) -> None:
        if self.t0 is None:
            self.t0 = start_s
        self.spans.append(_Span(start_s, start_s + duration_s if duration_s else None, capture_us))

    def capture_us(self, index: int, fps: float) -> tuple[int, float] | None:
        """(capture µs, media seconds) of output frame `index`, or None before any fragment."""
        if self.t0 is None or not self.spans:
            return None
        t = self.t0 + index / fps
        span = self.spans[0]
        for s in self.spans:
            if s.start_s <= t + 1e-6:
                span = s
            else:
                break
        return span.capture_us + max(0, round((t - span.start_s) * US)), t


class FragmentDecoder:
    """Feeds one camera's VideoFragments to ffmpeg; `frames()` returns what was decoded since the last call.

    `feed` never blocks: fragments go to a bounded queue a writer thread empties into ffmpeg's stdin."""

    def __init__(self, camera: str, fps: float, width: int, height: int | None, *,
                 max_pending: int = MAX_PENDING_FRAGMENTS, max_frames: int = MAX_QUEUED_FRAMES) -> None:
        self.camera = camera
        self.fps, self.width, self.height = fps, width, height
        self.max_pending, self.max_frames = max_pending, max_frames
        self.size: tuple[int, int] | None = None
        self.init: bytes | None = None
        self.last_seq: int | None = None
        self.need_key = True
        self.counters = collections.Counter[str]()
        self._run: _Run | None = None
        self._out: collections.deque[Frame] = collections.deque()
        self._lock = threading.Lock()

    # -- input ----------------------------------------------------------------------------------------------
    def feed(self, frag: VideoFragment) -> None:
        if frag.kind == "init":
            self.init = frag.data
            self._restart("new init segment")
            self.last_seq = frag.seq
            return
        gap = self.last_seq is not None and frag.seq != self.last_seq + 1
        self.last_seq = frag.seq
        if self.init is None:
            self.counters["skipped_no_init"] += 1
            return
        if gap and self._run is not None and self._run.fed:
            self.counters["gaps"] += 1
            self._restart(f"gap in seq before {frag.seq}")
        elif self._run is None or not self._run.alive():
            self._restart("decoder not running")
        if self.need_key and not frag.keyframe:
            self.counters["skipped_wait_key"] += 1
            return
        timing = _timing(self.init, frag.data)
        if timing is None:
            self.counters["bad_fragments"] += 1
            log.warning("motion[%s]: fragment %s has no usable decode time; skipped", self.camera, frag.seq)
            return
        assert self._run is not None
        if not self._run.put(frag.data):
            self.counters["dropped_fragments"] += 1
            self.need_key = True
            self._restart("decoder too slow: fragments dropped")  # next run starts at a key frame
            return
        self.need_key = False
        self._run.clock.add(timing[0], timing[1], frag.capture_us)
        self.counters["fragments"] += 1

    def _restart(self, why: str) -> None:
        self._stop_run(flush=True)
        self.need_key = True
        if self.init is None:
            return
        src = video_size(self.init)
        self.size = frame_size(src, self.width, self.height)
        log.debug("motion[%s]: (re)starting decoder (%s), %dx%d at %g fps", self.camera, why, *self.size, self.fps)
        self._run = _Run(self.camera, ffmpeg_argv(self.fps, *self.size), self.size, self.fps, self.init,
                         self.max_pending, self._emit)
        self.counters["restarts"] += 1

    def _emit(self, frame: Frame) -> None:
        with self._lock:
            if len(self._out) >= self.max_frames:
                self._out.popleft()
                self.counters["dropped_frames"] += 1
            self._out.append(frame)
            self.counters["frames"] += 1

    # -- output ---------------------------------------------------------------------------------------------
    def frames(self) -> list[Frame]:
        with self._lock:
            out = list(self._out)
            self._out.clear()
        return out

    def flush(self) -> list[Frame]:
        """End of input: let ffmpeg finish what it was given, then return every frame left."""
        self._stop_run(flush=True)
        return self.frames()

    def close(self) -> None:
        self._stop_run(flush=False)

    def _stop_run(self, flush: bool) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.stop(flush)
            if run.error:
                self.counters["decoder_errors"] += 1
                log.warning("motion[%s]: decoder: %s", self.camera, run.error)


def _timing(init: bytes, media: bytes) -> tuple[float, float | None] | None:
    """(decode time, duration) of a media fragment in seconds, parsed with its init segment."""
    try:
        frags = list(iter_fragments(BytesIO(init + media)))
    except Fmp4Error:
        return None
    m = frags[-1] if frags and frags[-1].kind == "media" else None
    if m is None or m.decode_time is None or not m.timescale:
        return None
    return m.decode_time / m.timescale, (m.duration / m.timescale if m.duration else None)


class _Run:
    """One ffmpeg process: a writer thread (fragments -> stdin), a reader thread (stdout -> frames)."""

    def __init__(self, camera: str, argv: list[str], size: tuple[int, int], fps: float, init: bytes,
                 max_pending: int, emit) -> None:  # noqa: ANN001 - callback
        import numpy as np

        self._np = np
        self.camera, self.size, self.fps, self.emit = camera, size, fps, emit
        self.clock = FragmentClock()
        self.fed = False
        self.error = ""
        self._q: queue.Queue[bytes | None] = queue.Queue(max_pending)
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         bufsize=0)
        except OSError as exc:
            raise DecodeError(f"cannot start ffmpeg: {exc}") from exc
        self._q.put(init)
        self._threads = [threading.Thread(target=t, daemon=True, name=f"motion-{camera}-{t.__name__}")
                         for t in (self._write, self._read, self._stderr)]
        for t in self._threads:
            t.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def put(self, data: bytes) -> bool:
        try:
            self._q.put_nowait(data)
        except queue.Full:
            return False
        self.fed = True
        return True

    def _write(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (data := self._q.get()) is not None:
                stdin.write(data)
        except (BrokenPipeError, OSError) as exc:
            self.error = self.error or f"ffmpeg stopped reading its input ({exc})"
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _read(self) -> None:
        w, h = self.size
        n = w * h * 3
        out = self.proc.stdout
        assert out is not None
        index = 0
        while True:
            buf = bytearray(n)
            view, got = memoryview(buf), 0
            while got < n:
                k = out.readinto(view[got:])
                if not k:
                    return
                got += k
            at = self.clock.capture_us(index, self.fps)
            index += 1
            if at is None:
                continue
            image = self._np.frombuffer(buf, dtype=self._np.uint8).reshape(h, w, 3)
            self.emit(Frame(at[0], image, at[1]))

    def _stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self.error = line[:300]
                log.debug("motion[%s]: ffmpeg: %s", self.camera, line)

    def stop(self, flush: bool) -> None:
        if flush:
            self._q.put(None)  # after everything queued: ffmpeg gets EOF and drains
            self._threads[0].join(STOP_GRACE_S * 3)
            self._threads[1].join(STOP_GRACE_S * 3)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        for t in self._threads:
            t.join(STOP_GRACE_S)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self.proc.returncode not in (0, None, -15) and not self.error:
            self.error = f"ffmpeg exited with status {self.proc.returncode}"


def probe_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) of a file's first video stream, from ffprobe."""
    try:
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                              "stream=width,height", "-of", "csv=p=0:s=x", str(path)],
                             capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise DecodeError(f"{path}: cannot probe the video: {exc}") from exc
    try:
        w, h = (int(x) for x in out.splitlines()[0].split("x")[:2])
    except (ValueError, IndexError):
        return None
    return (w, h) if w > 0 and h > 0 else None


def decode_file(path: str | Path, fps: float, width: int, height: int | None) -> Iterator[Frame]:
    """Frames of a video file (any container ffmpeg reads); `capture_us` is µs from the file's start."""
    import numpy as np

    if not Path(path).is_file():
        raise DecodeError(f"{path}: no such file")
    w, h = frame_size(probe_size(path), width, height)
    argv = ffmpeg_argv(fps, w, h, source=str(path), fmt=None)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    n, index = w * h * 3, 0
    try:
        while True:
            buf = proc.stdout.read(n)
            if len(buf) < n:
                break
            t = index / fps
            yield Frame(round(t * US), np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3), t)
            index += 1
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if proc.returncode not in (0, -9) and index == 0:
        raise DecodeError(f"{path}: ffmpeg could not decode it: {err.splitlines()[-1] if err else proc.returncode}")
