"""The uploader service: sealed bus → spool (fsync, then XACK) → every backend, with health and retention.

Discovers camera handles by SCAN `sealed:rec:*` every few seconds, reads them with XREADGROUP (group
`uploader`; first its own pending entries, i.e. delivered before a crash but never acknowledged), appends each
record to the spool, acknowledges only after the fsync, and hands it to one worker thread per backend.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from sealcam.bus import names
from sealcam.bus.client import BusAuth, connect
from sealcam.bus.contract import ContractError, Health, SealedRecord

from .backends import Backend, make_backend
from .jobs import JobRunner, backend_spec, reconcile_job_id, spec_for
from .pusher import BackendWorker
from .retention import local_deletions, remote_deletions, stale_class_marks
from .spool import Spool, SpoolError

log = logging.getLogger("sealcam.uploader")
SERVICE = "uploader"
DISCOVER_S = 2.0
HEALTH_S = 5.0
RETENTION_S = 600.0
BLOCK_MS = 500
DRAIN_S = 5.0  # at most this long taking in records already on the bus when stopping
COUNT = 64


def default_sealed_url(data_dir: Path) -> str:
    """Where the embedded sealed bus listens when the config names none (`sealcam up`)."""
    return f"unix://{Path(data_dir) / 'buses' / 'sealed.sock'}"


def _counter(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", name.lower())[:30]


@dataclass
class Uploader:
    sealed_url: str
    data_dir: Path
    backends: list[Backend]
    retention_days: int | None = None
    retention_max_bytes: int | None = None
    retention_event_days: int | None = None  # for objects of class "event" (config: event_days, else days)
    instance: str = field(default_factory=lambda: re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:48]
                          + f"-{os.getpid()}")
    discover_s: float = DISCOVER_S
    health_s: float = HEALTH_S
    retention_s: float = RETENTION_S
    jobs: bool = True  # backfill and retention as rq jobs (jobs.py) run by a worker thread; False: in-process
    job_retry_intervals: list[int] | None = None  # rq Retry intervals (default jobs.RETRY_INTERVALS)
    job_source: dict | str | None = None  # job argument: spec dict or config path (default: from `backends`)
    sealed_auth: BusAuth | None = None  # its ACL user on the sealed bus (None: no ACLs)

    def __post_init__(self) -> None:
        self.spool = Spool(self.data_dir)
        self.workers = [BackendWorker(b, self.spool) for b in self.backends]
        self.stop_event = threading.Event()
        self.r = connect(self.sealed_url, name=f"uploader-{self.instance}"[:60], auth=self.sealed_auth)
        self.runner = self._make_runner() if self.jobs else None
        self.streams: dict[str, str] = {}  # stream -> next id to read ("0": our pending first, then ">")
        self.bytes_spooled = 0
        self.records_spooled = 0
        self.records_rejected = 0
        self.last_arrival_ms = 0
        self._said_worm: set[str] = set()

    # -- config ----------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any, sealed_url: str | None = None, **kw: Any) -> Uploader:
        sec = config.section_for("uploader")
        data_dir = Path(sec["data_dir"])
        ret = sec["retention"]
        kw.setdefault("sealed_auth", sec["sealed_auth"])
        event_days = ret.event_days if ret.event_days is not None else ret.days
        kw.setdefault("job_source", spec_for(data_dir, list(sec["storage"]), ret.days,
                                             int(ret.max_gb * 1e9) if ret.max_gb else None, event_days))
        return cls(sealed_url=sealed_url or sec["sealed_bus"] or default_sealed_url(data_dir), data_dir=data_dir,
                   backends=[make_backend(s) for s in sec["storage"]], retention_days=ret.days,
                   retention_max_bytes=int(ret.max_gb * 1e9) if ret.max_gb else None,
                   retention_event_days=event_days, **kw)

    def _make_runner(self) -> JobRunner:
        """Reconcile and retention as rq jobs; a backend that cannot be described to a job (not built from a
        config model) keeps reconciling in its own thread."""
        source = self.job_source
        if source is None:
            specs = [backend_spec(b) for b in self.backends]
            source = spec_for(self.data_dir, [s for s in specs if s is not None], self.retention_days,
                              self.retention_max_bytes, self.retention_event_days)
        names_ok = ({s["name"] for s in source["storage"]} if isinstance(source, dict)
                    else {b.name for b in self.backends})
        runner = JobRunner(self.r, source, name=f"uploader-{self.instance}"[:60],
                           retry_intervals=self.job_retry_intervals)
        for w in self.workers:
            if w.backend.name in names_ok:
                w.jobs = runner
        return runner

    # -- bus -------------------------------------------------------------------------------------------------
    def discover(self) -> None:
        for key in self.r.scan_iter(match="sealed:rec:*", count=200, _type="stream"):
            stream = key.decode()
            if stream in self.streams:
                continue
            try:
                self.r.xgroup_create(stream, names.GROUP_UPLOADER, id="0", mkstream=False)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.streams[stream] = "0"
            log.info("reading %s", stream)

    def poll(self, block_ms: int = BLOCK_MS) -> int:
        """One XREADGROUP round over every known stream; returns records handled."""
        if not self.streams:
            self.stop_event.wait(block_ms / 1000)
            return 0
        pending_first = any(v == "0" for v in self.streams.values())
        resp = self.r.xreadgroup(names.GROUP_UPLOADER, self.instance, dict(self.streams), count=COUNT,
                                 block=None if pending_first else block_ms)
        n = 0
        for key, entries in resp or []:
            stream = key.decode() if isinstance(key, bytes) else key
            if self.streams.get(stream) == "0" and not entries:
                self.streams[stream] = ">"
                continue
            for entry_id, fields in entries:
                self._handle(stream, entry_id, fields)
                n += 1
                if self.streams[stream] != ">":
                    self.streams[stream] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        if pending_first:
            for s, v in self.streams.items():  # streams with no entry in the reply have no pending left
                if v == "0" and not any((k.decode() if isinstance(k, bytes) else k) == s for k, _ in resp or []):
                    self.streams[s] = ">"
        return n

    def _handle(self, stream: str, entry_id: bytes, fields: dict) -> None:
        arrived_ms = int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")[0])
        try:
            rec = SealedRecord.from_fields(fields)
            if names.sealed_rec(rec.handle) != stream:
                raise ContractError(f"record of handle {rec.handle} on {stream}")
            if rec.retention == "event":  # before the append: durable by the time we XACK
                self.spool.mark_event(rec.object_name)
            wrote = self.spool.append(rec)
        except (ContractError, SpoolError) as exc:
            # Nothing later can make this entry valid: acknowledge it so it does not block the stream, count it.
            self.records_rejected += 1
            log.error("%s %s: rejected: %s", stream, entry_id, exc)
            self.r.xack(stream, names.GROUP_UPLOADER, entry_id)
            return
        self.r.xack(stream, names.GROUP_UPLOADER, entry_id)  # only after the fsync in spool.append
        if wrote:
            self.records_spooled += 1
            self.bytes_spooled += len(rec.data)
        self.last_arrival_ms = max(self.last_arrival_ms, arrived_ms)
        for w in self.workers:
            w.submit(rec, arrived_ms / 1000)

    # -- health ----------------------------------------------------------------------------------------------
    def health(self) -> Health:
        now = time.time()
        lag = 0.0
        c: dict[str, int] = {"records_spooled": self.records_spooled, "bytes_spooled": self.bytes_spooled,
                             "records_rejected": self.records_rejected, "spool_bytes": self.spool.total_bytes(),
                             "backends_healthy": sum(w.healthy for w in self.workers)}
        for w in self.workers:
            n = _counter(w.backend.name)
            c[f"up_{n}_bytes"] = w.bytes_uploaded
            c[f"up_{n}_errors"] = w.errors
            c[f"up_{n}_ok"] = int(w.healthy)
            if w.oldest_pending is not None:
                lag = max(lag, now - w.oldest_pending)
        return Health(SERVICE, int(now * 1e6), c, lag_ms=int(max(0.0, lag) * 1000))

    def publish_health(self) -> None:
        h = self.health()
        self.r.xadd(names.SEALED_HEALTH, h.to_fields(), maxlen=names.MAXLEN_HEALTH, approximate=True)
        self.r.set(names.heartbeat_key(SERVICE, self.instance), h.at_us, ex=names.HEARTBEAT_TTL_S)

    # -- retention -------------------------------------------------------------------------------------------
    def apply_retention(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        entries = self.spool.entries()
        uploaded = {n for n, e in entries.items() if e.complete and all(w.healthy and n not in w.known
                                                                       for w in self.workers)}
        events = self.spool.event_objects()
        cls = {"event_days": self.retention_event_days, "events": events}
        doomed = local_deletions(entries.values(), now, self.retention_days, self.retention_max_bytes, uploaded,
                                 **cls)
        for n in doomed:
            self.spool.delete(n)
        for w in self.workers:
            b = w.backend
            if not w.healthy:
                continue
            try:
                listing = b.list()
                remote, reason = remote_deletions(listing, now, self.retention_days, b.can_delete, **cls)
                if reason and b.name not in self._said_worm:
                    self._said_worm.add(b.name)
                    log.info("%s: remote retention skipped: %s", b.name, reason)
                for n in remote:
                    b.delete(n)
            except Exception as exc:  # noqa: BLE001 - retention never takes the uploader down
                log.warning("%s: remote retention failed: %s", b.name, exc)
        for n in stale_class_marks(events, set(self.spool.entries()), now, self.retention_event_days):
            self.spool.forget_class(n)
        return doomed

    # -- main loop -------------------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None) -> None:
        if self.runner is not None:
            try:
                self.runner.cleanup_stale([reconcile_job_id(b.name) for b in self.backends] + ["retention"])
            except redis.RedisError as exc:
                log.warning("sealed bus: %s (stale jobs left as they are)", exc)
            self.runner.start()
        for w in self.workers:
            w.start()
        t_end = None if duration_s is None else time.monotonic() + duration_s
        next_discover = next_health = 0.0
        next_retention = time.monotonic() + min(self.retention_s, 30.0)
        try:
            while not self.stop_event.is_set() and (t_end is None or time.monotonic() < t_end):
                now = time.monotonic()
                try:
                    if now >= next_discover:
                        self.discover()
                        next_discover = now + self.discover_s
                    if now >= next_health:
                        self.publish_health()
                        next_health = now + self.health_s
                    if now >= next_retention:
                        if self.runner is not None:
                            self.runner.retention()
                        else:
                            self.apply_retention()
                        next_retention = now + self.retention_s
                    self.poll()
                except redis.RedisError as exc:
                    log.warning("sealed bus: %s (retrying)", exc)
                    self.stop_event.wait(1.0)
        finally:
            self._drain()
            for w in self.workers:
                w.stop()
            if self.runner is not None:
                self.runner.stop()
            try:
                self.publish_health()
            except redis.RedisError:
                pass

    def _drain(self) -> None:
        """On a clean stop, take in what is already on the sealed bus (e.g. the final records crypto wrote
        while closing its segments) before the backend workers finish their queues. Bounded by DRAIN_S."""
        deadline = time.monotonic() + DRAIN_S
        try:
            self.discover()
            # A stream found just now is first read for its pending history ("0"), which takes a poll that
            # returns 0 even when new records wait: so poll once before judging the bus empty.
            self.poll(block_ms=200)
            while time.monotonic() < deadline and self.poll(block_ms=200) > 0:
                pass
        except redis.RedisError as exc:
            log.warning("sealed bus: %s while draining on stop; the rest is sent on the next start", exc)

    def stop(self) -> None:
        self.stop_event.set()

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
