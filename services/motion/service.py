"""The motion service's I/O loop: video from the plain bus in, events and thumbnails out.

One thread per camera reads its video stream in the `motion` consumer group (`plain:detect:CAM` when the camera
has a detect-only input, else `plain:frag:CAM`), feeds the fragments to its decoder (an ffmpeg subprocess,
decode.py) and each decoded frame through the camera's pipeline (pipeline.py); MotionEvents go to
`plain:event:CAM`, Thumbnails to `plain:thumb:CAM`. Entries are ACKed once fed: motion wants the present, and
after a crash it goes on from where its group stands (the stream is bounded, so at most a couple of minutes).
The main thread refreshes the heartbeat key and publishes Health per camera. On stop, open events end cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from sealcam.bus import names
from sealcam.bus.contract import ContractError, Health, MotionEvent, VideoFragment
from sealcam.motion.decode import DecodeError, FragmentDecoder
from sealcam.motion.events import Message
from sealcam.motion.pipeline import CameraPipeline

log = logging.getLogger("sealcam.motion")

SERVICE = "motion"
HEALTH_INTERVAL_S = 5.0
READ_COUNT = 8
BLOCK_MS = 500


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class CameraWorker:
    camera: str
    settings: Any  # sealcam.config.motion.MotionSettings
    bus: Any  # redis.Redis
    detect_only: bool = False
    consumer: str = "motion-1"
    objects: tuple[Any, type[BaseException]] | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    block_ms: int = BLOCK_MS
    published: int = 0
    dropped_messages: int = 0
    last_capture_us: int = 0
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.stream = names.plain_detect(self.camera) if self.detect_only else names.plain_frag(self.camera)
        s = self.settings
        self.decoder = FragmentDecoder(self.camera, s.detect_fps, s.detect_width, s.detect_height)
        self.pipeline = CameraPipeline(self.camera, s, objects=self.objects)
        self._inits: list[tuple[bytes, bytes]] | None = None  # (entry id, data) of init segments on the stream
        self._no_init_warned = False

    # -- thread ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"motion-{self.camera}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        backoff = 0.1
        started = False
        try:
            while not self.stop_event.is_set():
                try:
                    if not started:
                        self._setup()
                        started = True
                    self.step()
                    backoff = 0.1
                except (redis.RedisError, OSError) as exc:
                    log.warning("motion[%s]: bus error (%s); retrying in %.1f s", self.camera, exc, backoff)
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                except DecodeError as exc:
                    log.error("motion[%s]: %s", self.camera, exc)
                    self.stop_event.wait(5.0)
                except Exception:  # noqa: BLE001 - a bug in one step must not end the camera's thread
                    log.exception("motion[%s]: unexpected error", self.camera)
                    self.stop_event.wait(1.0)
        finally:
            self._shutdown()

    def _setup(self) -> None:
        try:
            self.bus.xgroup_create(self.stream, names.GROUP_MOTION, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        log.info("motion[%s]: reading %s", self.camera, self.stream)

    def step(self) -> None:
        resp = self.bus.xreadgroup(names.GROUP_MOTION, self.consumer, {self.stream: ">"}, count=READ_COUNT,
                                   block=self.block_ms)
        for _stream, entries in resp or []:
            for entry_id, fields in entries:
                if fields:
                    self._feed(entry_id, fields)
                self.bus.xack(self.stream, names.GROUP_MOTION, entry_id)
        self._analyse(self.decoder.frames())

    def _feed(self, entry_id: bytes, fields: dict) -> None:
        try:
            frag = VideoFragment.from_fields(fields)
            if frag.camera != self.camera:
                raise ContractError(f"fragment of camera {frag.camera!r} on another camera's stream")
        except ContractError as exc:
            log.error("motion[%s]: refusing a malformed entry on %s: %s", self.camera, self.stream, exc)
            return
        if frag.kind == "media" and self.decoder.init is None:
            init = self._find_init(entry_id)
            if init is not None:
                self.decoder.feed(VideoFragment(self.camera, frag.seq - 1, frag.capture_us, False, "init", init))
        self.decoder.feed(frag)

    def _find_init(self, before: bytes) -> bytes | None:
        """After a (re)start the init segment may be older than our group's position: the latest one before
        `before` still on the stream, else (trimmed away) the latest one the recorder keeps beside the stream.
        Looked up once."""
        if self._inits is None:
            self._inits = []
            for eid, f in self.bus.xrevrange(self.stream, count=names.MAXLEN_FRAG * 2):
                if f.get(b"kind") == b"init":
                    try:
                        self._inits.append((eid, VideoFragment.from_fields(f).data))
                    except ContractError:
                        continue
        key = _id(before)
        found = next((data for eid, data in self._inits if _id(eid) < key), None)
        if found is None:
            found = self._kept_init()
        return found

    def _kept_init(self) -> bytes | None:
        kept = self.bus.hgetall(names.plain_init(self.stream))
        try:
            frag = VideoFragment.from_fields(kept) if kept else None
        except ContractError as exc:
            log.warning("motion[%s]: ignoring a malformed kept init segment: %s", self.camera, exc)
            frag = None
        if frag is None or frag.kind != "init" or frag.camera != self.camera:
            if not self._no_init_warned:
                log.warning("motion[%s]: no init segment for %s yet; waiting for the next one", self.camera,
                            self.stream)
                self._no_init_warned = True
            return None
        return frag.data

    def _analyse(self, frames: list) -> None:  # noqa: ANN001
        for f in frames:
            self.last_capture_us = max(self.last_capture_us, f.capture_us)
            self._publish(self.pipeline.process(f))

    def _publish(self, msgs: list[Message]) -> None:
        for m in msgs:
            if isinstance(m, MotionEvent):
                stream, maxlen = names.plain_event(self.camera), names.MAXLEN_EVENT
                log.info("motion[%s]: event %s %s %s (%s %d)", self.camera, m.event_id[:8], m.phase, m.kind,
                         m.label, m.score)
            else:
                stream, maxlen = names.plain_thumb(self.camera), names.MAXLEN_THUMB
            try:
                self.bus.xadd(stream, m.to_fields(), maxlen=maxlen, approximate=True)
                self.published += 1
            except redis.RedisError as exc:
                self.dropped_messages += 1
                log.warning("motion[%s]: bus refused a %s message (%s)", self.camera, m.T, exc)

    def _shutdown(self) -> None:
        """Decode what was fed, then end open events (a stop is not a crash)."""
        try:
            self._analyse(self.decoder.flush())
        finally:
            self.decoder.close()
        self._publish(self.pipeline.finish())
        log.info("motion[%s]: stopped", self.camera)

    def stop(self) -> None:
        self.stop_event.set()

    # -- health ---------------------------------------------------------------------------------------------
    def health(self) -> Health:
        c = self.pipeline.counters
        d = self.decoder.counters
        counters = {"frames": c["frames"], "motion_frames": c["motion_frames"], "events": self.pipeline.events.events,
                    "fragments": d["fragments"], "dropped_fragments": d["dropped_fragments"],
                    "dropped_frames": d["dropped_frames"], "decoder_restarts": d["restarts"], "gaps": d["gaps"],
                    "decoder_errors": d["decoder_errors"], "published": self.published,
                    "dropped_messages": self.dropped_messages, "detections": c["detections"]}
        lag_ms = max(0, (now_us() - self.last_capture_us) // 1000) if self.last_capture_us else 0
        return Health(SERVICE, now_us(), counters, lag_ms, self.camera)


def _id(entry_id: bytes | str) -> tuple[int, int]:
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class MotionService:
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
                if mono >= next_hb:
                    next_hb = mono + names.HEARTBEAT_INTERVAL_S
                    self._safe(lambda: self.bus.set(hb_key, str(now_us()), ex=names.HEARTBEAT_TTL_S))
                if mono >= next_health:
                    next_health = mono + self.health_interval_s
                    self._health()
                self.stop_event.wait(min(0.25, self.health_interval_s))
        finally:
            self.shutdown()
            self._health()  # the final counters, after open events were ended
        return 0

    def _health(self) -> None:
        for w in self.workers:
            h = w.health()
            self._safe(lambda h=h: self.bus.xadd(names.PLAIN_HEALTH, h.to_fields(), maxlen=names.MAXLEN_HEALTH,
                                                 approximate=True))

    def _safe(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except redis.RedisError as exc:
            log.warning("motion: bus error (%s); will retry", exc)

    def shutdown(self) -> None:
        for w in self.workers:
            w.stop()
        for w in self.workers:
            w.join(15)
        log.info("motion: stopped")

    def stop(self) -> None:
        self.stop_event.set()
