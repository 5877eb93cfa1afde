"""The crypto service loop: plain bus in, sealed bus out, nothing else (no network, no storage client).

Order of durability, per plain message: seal -> XADD the sealed record(s) -> state updates -> XACK the plain
entry. A crash at any point leaves the plain entry pending (re-read first on restart, id 0) or a sealed
record already out, never an ACK for something that is not on the sealed bus.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from sealcam.bus import names
from sealcam.bus.contract import ContractError, FeedEvent, Health, MotionEvent, Thumbnail, VideoFragment, decode
from sealcam.format.writer import Signer

from .modes import ModeSettings
from .rotation import wall_clock_us
from .sealer import DEFAULT_CHECKPOINT_EVERY, CameraSealer, Out
from .state import StateStore

log = logging.getLogger("sealcam.crypto")

SERVICE = "crypto"
HEALTH_EVERY_S = names.HEARTBEAT_INTERVAL_S
READ_COUNT = 16


class Stopping(Exception):
    """Stop was requested while a sealed write could not be completed."""


@dataclass
class CameraSpec:
    camera: str
    recipients: Sequence
    mode: ModeSettings | None = None  # recording mode; None: continuous
    segment_seconds: float | None = None  # this camera's own segment length; None: the service's


class CryptoService:
    def __init__(self, *, cameras: Sequence[CameraSpec], signer: Signer, handle_for: Callable[[str], bytes],
                 plain: redis.Redis, sealed: redis.Redis, data_dir: str | Path, segment_seconds: float,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, consumer: str = "crypto-1",
                 stop: threading.Event | None = None, clock: Callable[[], int] = wall_clock_us,
                 block_ms: int = 1000) -> None:
        self.plain, self.sealed = plain, sealed
        self.consumer = consumer
        self.stop = stop or threading.Event()
        self.clock = clock
        self.block_ms = block_ms
        self.sealers: dict[str, CameraSealer] = {}
        for spec in cameras:
            handle = handle_for(spec.camera)
            store = StateStore(data_dir, handle.hex())
            self.sealers[spec.camera] = CameraSealer(spec.camera, handle, signer, spec.recipients, store,
                                                     segment_seconds=spec.segment_seconds or segment_seconds,
                                                     checkpoint_every=checkpoint_every, clock=clock,
                                                     mode=spec.mode)
        self._stream_kind: dict[str, tuple[str, str | None]] = {}
        for cam in self.sealers:
            self._stream_kind[names.plain_frag(cam)] = ("frag", cam)
            self._stream_kind[names.plain_event(cam)] = ("event", cam)
            self._stream_kind[names.plain_thumb(cam)] = ("thumb", cam)
        self._stream_kind[names.PLAIN_HEALTH] = ("health", None)
        self._paused: set[str] = set()  # sealed streams at their bound with unacknowledged entries
        self._backlog: deque[tuple[str, bytes, dict]] = deque()  # delivered, not yet sealed (backpressure)
        self._last_health = 0.0
        self.forwarded = 0

    # -- start ------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        for stream in self._stream_kind:
            _create_group(self.plain, stream, names.GROUP_CRYPTO)
        for s in self.sealers.values():
            # the uploader's group from the first entry on, so nothing is trimmed before it ever read it
            _create_group(self.sealed, s.stream, names.GROUP_UPLOADER)
            if s.init is None:
                s.init = self._latest_init(s.camera)

    def _latest_init(self, camera: str) -> bytes | None:
        """After a restart: the init segment (ACKed long ago) the recorder keeps beside the trimmed stream, else
        the newest one still on the stream (a recorder that keeps none)."""
        stream = names.plain_frag(camera)
        kept = self.plain.hgetall(names.plain_init(stream))
        if kept:
            try:
                frag = VideoFragment.from_fields(kept)
            except ContractError as exc:
                log.warning("crypto[%s]: ignoring a malformed kept init segment: %s", camera, exc)
            else:
                if frag.kind == "init" and frag.camera == camera:
                    return frag.data
        for _id, fields in self.plain.xrevrange(stream, count=names.MAXLEN_FRAG * 2):
            if fields and fields.get(b"kind") == b"init":
                try:
                    return VideoFragment.from_fields(fields).data
                except ContractError:
                    continue
        return None

    # -- main loop --------------------------------------------------------------------------------------

    def run(self) -> None:
        backoff = 0.1
        started = False
        while not self.stop.is_set():
            try:
                if not started:
                    self._setup()
                    self._read_pending()
                    started = True
                self._step()
                backoff = 0.1
            except Stopping:
                break
            except (redis.RedisError, OSError) as exc:
                log.warning("crypto: bus error (%s); retrying in %.1f s", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self._shutdown()

    def _read_pending(self) -> None:
        """Entries delivered before a crash and never ACKed: sealed first, into the new segment."""
        while True:
            resp = self.plain.xreadgroup(names.GROUP_CRYPTO, self.consumer, dict.fromkeys(self._stream_kind, "0"),
                                         count=READ_COUNT)
            entries = sum(len(e) for _s, e in resp or [])
            if not entries:
                return
            log.info("crypto: re-reading %s pending plain entries", entries)
            self._dispatch(resp)
            if self._backlog:  # paused by backpressure: the main loop goes on from the backlog
                return

    def _step(self) -> None:
        self._refresh_backpressure()
        if self._paused:
            self.stop.wait(0.5)
        elif self._backlog:
            self._drain()
        else:
            resp = self.plain.xreadgroup(names.GROUP_CRYPTO, self.consumer, dict.fromkeys(self._stream_kind, ">"),
                                         count=READ_COUNT, block=self.block_ms)
            self._dispatch(resp or [])
        for s in self.sealers.values():
            self._publish(s.tick())
        if time.monotonic() - self._last_health >= HEALTH_EVERY_S:
            self._health()

    def _dispatch(self, resp) -> None:  # noqa: ANN001 - redis-py reply
        for stream, entries in resp:
            stream = stream.decode() if isinstance(stream, bytes) else stream
            self._backlog.extend((stream, entry_id, fields) for entry_id, fields in entries)
        self._drain()

    def _drain(self) -> None:
        """Seal delivered entries in order; stop early under backpressure (the rest stay pending, un-ACKed)."""
        while self._backlog and not self._paused:
            stream, entry_id, fields = self._backlog[0]
            kind, cam = self._stream_kind[stream]
            if fields:  # an entry trimmed while pending comes back empty: nothing to seal, just ACK it
                try:
                    self._handle(kind, cam, fields)
                except ContractError as exc:
                    log.error("crypto[%s]: refusing a malformed entry on %s: %s", cam or "-", stream, exc)
            self.plain.xack(stream, names.GROUP_CRYPTO, entry_id)
            self._backlog.popleft()

    def _handle(self, kind: str, cam: str | None, fields) -> None:  # noqa: ANN001
        if kind == "frag":
            frag = VideoFragment.from_fields(fields)
            if frag.camera != cam:
                raise ContractError(f"fragment of camera {frag.camera!r} on another camera's stream")
            self._publish(self.sealers[cam].fragment(frag))
        elif kind == "event":
            ev = decode(fields)
            if not isinstance(ev, FeedEvent | MotionEvent):
                raise ContractError(f"{type(ev).__name__} on an event stream")
            if ev.camera != cam:
                raise ContractError(f"event of camera {ev.camera!r} on another camera's stream")
            s = self.sealers[cam]
            if isinstance(ev, MotionEvent):
                self._publish(s.event(ev))
            elif ev.state == "lost":
                s.feed_state(True)
                s.feed_lost(ev.at_us)
            else:
                s.feed_state(False)
                self._publish(s.feed_back(ev.at_us, ev.detail))
        elif kind == "thumb":
            th = Thumbnail.from_fields(fields)
            if th.camera != cam:
                raise ContractError(f"thumbnail of camera {th.camera!r} on another camera's stream")
            self._publish(self.sealers[cam].thumbnail(th))
        else:
            h = Health.from_fields(fields)  # validated: only service, camera, counters, lag_ms, at_us pass
            fwd = Health(h.service, h.at_us, dict(h.counters), h.lag_ms, h.camera)
            self.sealed.xadd(names.SEALED_HEALTH, fwd.to_fields(), maxlen=names.MAXLEN_HEALTH, approximate=True)
            self.forwarded += 1

    # -- sealed output ----------------------------------------------------------------------------------

    def _publish(self, outs: list[Out]) -> None:
        for out in outs:
            self._xadd(out)
            if out.done is not None:
                out.done()

    def _xadd(self, out: Out) -> None:
        """XADD one sealed record, retrying bus errors until it is there (or stop is requested)."""
        stream = names.sealed_rec(out.record.handle)
        backoff = 0.1
        while True:
            try:
                self.sealed.xadd(stream, out.record.to_fields())
                break
            except (redis.RedisError, OSError) as exc:
                if self.stop.is_set():
                    raise Stopping from exc
                log.warning("crypto: sealed bus error (%s); retrying in %.1f s", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        try:
            if self._trim(stream) and stream not in self._paused:
                log.warning("crypto: %s is full and the uploader lags: pausing (backpressure)", stream)
                self._paused.add(stream)
        except redis.RedisError as exc:
            log.warning("crypto: could not trim %s (%s)", stream, exc)

    def _trim(self, stream: str) -> bool:
        """Trim to MAXLEN_SEALED_REC, but never below the oldest entry some group has not acknowledged.
        True when the stream is still over its bound (backpressure)."""
        n = self.sealed.xlen(stream)
        if n <= names.MAXLEN_SEALED_REC:
            return False
        floor = None
        for g in self.sealed.xinfo_groups(stream):
            keep = [_parse_id(g["last-delivered-id"])]
            if g["pending"]:
                keep.append(_parse_id(self.sealed.xpending(stream, g["name"])["min"]))
            floor = min([*keep, floor] if floor is not None else keep)
        if floor is None:  # nobody reads it yet (should not happen: we create the uploader group)
            return True
        # keep the last `MAXLEN` entries anyway; trim only what every group acknowledged
        tail = self.sealed.xrevrange(stream, count=names.MAXLEN_SEALED_REC)
        bound = _parse_id(tail[-1][0])
        self.sealed.xtrim(stream, minid="{}-{}".format(*min(floor, bound)), approximate=False)
        return self.sealed.xlen(stream) > names.MAXLEN_SEALED_REC

    def _refresh_backpressure(self) -> None:
        for s in self.sealers.values():
            over = self._trim(s.stream)
            if over and s.stream not in self._paused:
                log.warning("crypto[%s]: sealed stream full and the uploader lags: pausing (backpressure)",
                            s.camera)
                self._paused.add(s.stream)
            elif not over and s.stream in self._paused:
                log.info("crypto[%s]: uploader caught up: resuming", s.camera)
                self._paused.discard(s.stream)

    # -- health -----------------------------------------------------------------------------------------

    def _health(self) -> None:
        self._last_health = time.monotonic()
        now = self.clock()
        hb = names.heartbeat_key(SERVICE, self.consumer)
        for bus in (self.sealed, self.plain):
            bus.set(hb, str(now), ex=names.HEARTBEAT_TTL_S)
        for cam, s in self.sealers.items():
            lag = max(0, (now - s.last_capture_us) // 1000) if s.last_capture_us else 0
            h = Health(SERVICE, now, s.health_counters() | {"paused": int(s.stream in self._paused)}, lag, cam)
            self.sealed.xadd(names.SEALED_HEALTH, h.to_fields(), maxlen=names.MAXLEN_HEALTH, approximate=True)
        for key in self.plain.scan_iter(match="hb:*", count=100):  # plain-side heartbeats, as metadata only
            parts = key.decode("ascii", "replace").split(":")
            val = self.plain.get(key)
            if len(parts) != 3 or parts[1] == SERVICE or not val or not val.isdigit():
                continue
            try:
                h = Health(parts[1], int(val), {"heartbeat": 1})
            except ContractError:
                continue
            self.sealed.xadd(names.SEALED_HEALTH, h.to_fields(), maxlen=names.MAXLEN_HEALTH, approximate=True)

    # -- stop -------------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """A clean stop is not a crash: close every open segment with its final record."""
        for s in self.sealers.values():
            try:
                outs = s.close()
                for out in outs:  # one attempt round: on a dead bus, fall back to crash semantics
                    self.sealed.xadd(names.sealed_rec(out.record.handle), out.record.to_fields())
                    if out.done is not None:
                        out.done()
                if outs:
                    log.info("crypto[%s]: closed segment on stop", s.camera)
            except (redis.RedisError, OSError) as exc:
                log.error("crypto[%s]: could not close the open segment on stop (%s); the next start "
                          "declares it unfinished", s.camera, exc)
                s.abort()


def _create_group(r: redis.Redis, stream: str, group: str) -> None:
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _parse_id(value: bytes | str) -> tuple[int, int]:
    s = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)
