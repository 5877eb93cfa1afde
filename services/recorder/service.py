"""The recorder's I/O loop: one ffmpeg per camera record input, fragments to the plain bus.

Each camera runs in its own thread: start ffmpeg (stdout is a pipe; video never touches disk), split its
stdout with `iter_fragments`, XADD each piece to `plain:frag:CAMERA` (MAXLEN ~). When ffmpeg exits or stalls
(no fragment for `stall_s`: it is killed) the feed is `lost` (a FeedEvent with ffmpeg's last stderr line,
password masked); the thread retries with backoff and publishes `back` when fragments flow again. The main
thread refreshes the heartbeat key, publishes Health per camera, kills stalled ffmpegs and handles stop.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from sealcam.bus import names
from sealcam.bus.contract import ContractError, FeedEvent, Health, VideoFragment
from sealcam.config.secrets import SecretError
from sealcam.media.fmp4 import Fmp4Error, iter_fragments

from .backoff import Backoff
from .feed import FeedMapper
from .ffmpeg_cmd import Command, build_command

log = logging.getLogger("sealcam.recorder")

SERVICE = "recorder"
HEALTH_INTERVAL_S = 5.0
STALL_S = 10.0
STARTUP_S = 20.0  # connect + probe allowance before the first fragment
STOP_GRACE_S = 3.0
MAX_DETAIL = 400


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class Stats:
    fragments: int = 0
    bytes: int = 0
    restarts: int = 0
    lost: int = 0
    dropped: int = 0  # fragments the bus refused (after its own retries)
    last_fragment_mono: float | None = None

    def counters(self, up: bool) -> dict[str, int]:
        return {"fragments": self.fragments, "bytes": self.bytes, "restarts": self.restarts, "lost": self.lost,
                "dropped": self.dropped, "up": int(up)}


@dataclass
class CameraWorker:
    """One camera's record input, in its own thread."""

    camera: str
    url: str
    bus: Any  # redis.Redis
    password: Callable[[], str | None] = lambda: None  # read at each (re)connect, never stored or logged
    fragment_seconds: float = 1.0
    stall_s: float = STALL_S
    startup_s: float = STARTUP_S
    backoff: Backoff = field(default_factory=Backoff)
    role: str = "record"  # "detect": a detect-only input, published to plain:detect:CAM for motion only
    stats: Stats = field(default_factory=Stats)
    stop_event: threading.Event = field(default_factory=threading.Event)
    up: bool | None = field(default=None, init=False)  # None: unknown (no event published by anyone yet)
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _cmd: Command | None = field(default=None, init=False, repr=False)
    _last_err: str = field(default="", init=False)
    _started_mono: float = field(default=0.0, init=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.mapper = FeedMapper(self.camera)
        self.detect = self.role == "detect"
        self.frag_stream = names.plain_detect(self.camera) if self.detect else names.plain_frag(self.camera)
        self.maxlen = names.MAXLEN_DETECT if self.detect else names.MAXLEN_FRAG
        self.event_stream = names.plain_event(self.camera)
        self._resume()

    # --- state from the bus: continue seq and feed state across recorder restarts -------------------------
    def _resume(self) -> None:
        try:
            last = self.bus.xrevrange(self.frag_stream, count=1)
            if last:
                self.mapper.next_seq = VideoFragment.from_fields(last[0][1]).seq + 1
            ev = self.bus.xrevrange(self.event_stream, count=1)
            if ev:
                self.up = FeedEvent.from_fields(ev[0][1]).state == "back"
        except (redis.RedisError, ContractError) as exc:
            log.warning("recorder[%s]: cannot read previous state from the bus (%s); seq starts at 0",
                        self.camera, exc)

    # --- thread -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"recorder-{self.camera}", daemon=True)
        self._thread.start()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._run_once()
            except SecretError as exc:  # never carries the secret itself
                log.error("recorder[%s]: %s", self.camera, exc)
                self._last_err = str(exc)
            except Exception:  # noqa: BLE001 - a bug in one run must not end the camera's thread
                log.exception("recorder[%s]: unexpected error", self.camera)
                self._last_err = "recorder error"
            if self.stop_event.is_set():
                break
            self._feed_lost(self._last_err or "ffmpeg exited")
            delay = self.backoff.next_delay()
            self.stats.restarts += 1
            log.info("recorder[%s]: reconnecting in %.1f s", self.camera, delay)
            self.stop_event.wait(delay)
        if self.up:  # a stopped recorder is a lost feed too, never a silent gap
            self._event("lost", "recorder stopped")
            self.up = False

    def _run_once(self) -> None:
        cmd = build_command(self.url, self.password(), fragment_seconds=self.fragment_seconds)
        log.info("recorder[%s]: starting %s", self.camera, cmd.log_form())
        self._last_err = ""
        start = now_us()
        with self._lock:
            if self.stop_event.is_set():
                return
            self._cmd = cmd
            self._proc = proc = subprocess.Popen(cmd.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE, bufsize=0)
            self._started_mono = time.monotonic()
            self.stats.last_fragment_mono = None
        self.mapper.restart(start)
        err_thread = threading.Thread(target=self._read_stderr, args=(proc, cmd), daemon=True,
                                      name=f"recorder-{self.camera}-stderr")
        err_thread.start()
        try:
            assert proc.stdout is not None
            for frag in iter_fragments(proc.stdout):  # type: ignore[arg-type]
                self._publish(frag)
        except Fmp4Error as exc:
            self._last_err = f"bad fMP4 from ffmpeg: {exc}"
        finally:
            self._terminate(proc)
            err_thread.join(2)
            with self._lock:
                self._proc = None
        rc = proc.returncode
        if not self._last_err:
            self._last_err = f"ffmpeg exited with status {rc}"
        if not self.stop_event.is_set():
            log.warning("recorder[%s]: feed ended (status %s): %s", self.camera, rc, self._last_err)

    def _read_stderr(self, proc: subprocess.Popen, cmd: Command) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = cmd.mask(raw.decode("utf-8", "replace").strip())
            if line:
                self._last_err = line[:MAX_DETAIL]
                log.debug("recorder[%s]: ffmpeg: %s", self.camera, line)

    def _publish(self, frag: Any) -> None:
        msg = self.mapper.map(frag, now_us())
        self.stats.last_fragment_mono = time.monotonic()
        try:
            self.bus.xadd(self.frag_stream, msg.to_fields(), maxlen=self.maxlen, approximate=True)
        except redis.RedisError as exc:
            self.stats.dropped += 1
            log.warning("recorder[%s]: bus refused fragment %s (%s); consumers will see a gap",
                        self.camera, msg.seq, exc)
            return
        self.stats.fragments += 1
        self.stats.bytes += len(msg.data)
        if msg.kind == "init":
            self._store_init(msg)
        if msg.kind == "media":
            self.backoff.healthy()
            if self.up is not True:
                self._event("back", "")
                self.up = True
                log.info("recorder[%s]: feed is up", self.camera)

    def _store_init(self, msg: VideoFragment) -> None:
        """Keep the latest init beside the stream: the stream is trimmed, a consumer restarting later needs it."""
        try:
            self.bus.hset(names.plain_init(self.frag_stream), mapping=msg.to_fields())
        except redis.RedisError as exc:
            log.warning("recorder[%s]: cannot store the init segment (%s); a consumer restarting later waits for "
                        "the next one", self.camera, exc)

    def _feed_lost(self, detail: str) -> None:
        if self.up is False:
            return  # already reported; stays lost until fragments flow
        self.stats.lost += 1
        self._event("lost", detail)
        self.up = False

    def _event(self, state: str, detail: str) -> None:
        if self.detect:  # feed events describe the recorded footage; the detect input's state is in its health
            log.info("recorder[%s]: detect input %s %s", self.camera, state, detail)
            return
        detail = detail.encode()[:MAX_DETAIL].decode("utf-8", "ignore")
        try:
            self.bus.xadd(self.event_stream, FeedEvent(self.camera, state, now_us(), detail).to_fields(),  # type: ignore[arg-type]
                          maxlen=names.MAXLEN_EVENT, approximate=True)
        except redis.RedisError as exc:
            log.warning("recorder[%s]: cannot publish feed %s event (%s)", self.camera, state, exc)

    # --- supervision (main thread) ------------------------------------------------------------------------
    def check_stall(self, mono: float | None = None) -> bool:
        """Kill ffmpeg if no fragment came for stall_s (since the last one, or since start). True if killed."""
        mono = time.monotonic() if mono is None else mono
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return False
            last = self.stats.last_fragment_mono
            limit = self.stall_s if last is not None else max(self.stall_s, self.startup_s)
            if mono - (last if last is not None else self._started_mono) < limit:
                return False
            self._last_err = f"no video for {limit:g} s (stalled); {self._last_err}".rstrip("; ")
            log.warning("recorder[%s]: stalled, killing ffmpeg", self.camera)
            proc.kill()
            return True

    def stop(self) -> None:
        self.stop_event.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            self._terminate(proc)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _terminate(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdout,):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def health(self) -> Health:
        last = self.stats.last_fragment_mono
        lag_ms = int((time.monotonic() - last) * 1000) if last is not None else 0
        counters = self.stats.counters(self.up is True)
        if self.detect:
            counters = {f"detect_{k}": v for k, v in counters.items()}
        return Health(SERVICE, now_us(), counters, lag_ms, self.camera)


@dataclass
class Recorder:
    """All cameras of one recorder process, plus heartbeat and health."""

    bus: Any
    workers: list[CameraWorker]
    instance: str = "main"
    health_interval_s: float = HEALTH_INTERVAL_S
    stop_event: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        for w in self.workers:
            w.start()
        hb_key = names.heartbeat_key(SERVICE, self.instance)
        next_hb = next_health = 0.0
        try:
            while not self.stop_event.is_set():
                mono = time.monotonic()
                for w in self.workers:
                    w.check_stall(mono)
                if mono >= next_hb:
                    next_hb = mono + names.HEARTBEAT_INTERVAL_S
                    self._safe(lambda: self.bus.set(hb_key, str(now_us()), ex=names.HEARTBEAT_TTL_S))
                if mono >= next_health:
                    next_health = mono + self.health_interval_s
                    for w in self.workers:
                        h = w.health()
                        self._safe(lambda h=h: self.bus.xadd(names.PLAIN_HEALTH, h.to_fields(),
                                                             maxlen=names.MAXLEN_HEALTH, approximate=True))
                self.stop_event.wait(0.25)
        finally:
            self.shutdown()
        return 0

    def _safe(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except redis.RedisError as exc:
            log.warning("recorder: bus error (%s); will retry", exc)

    def shutdown(self) -> None:
        for w in self.workers:
            w.stop()
        for w in self.workers:
            w.join(STOP_GRACE_S + 2)
        log.info("recorder: stopped")

    def stop(self) -> None:
        self.stop_event.set()
