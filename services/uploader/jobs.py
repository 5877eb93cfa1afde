"""Backfill (reconcile after an outage) and retention as rq jobs with retries, on the sealed bus.

Job functions take only picklable, secret-free arguments: `source` is a config file path (str) or a spec dict
(`spec_for(...)`: data_dir, storage models dumped with their SecretRefs as references, retention). A job loads
its backend and reads the backend's secrets (SecretRef files / env) when it runs, never from the job hash.

- `reconcile_backend(source, backend_name)`: under the per-backend lock `uploader:lock:<backend>`, records the
  spool snapshot time in job.meta, lists the remote, plans with reconcile.py and sends what it lacks from the
  spool. Returns counts plus `known` (sizes the remote now holds of recent objects) and `snapshot_at`.
- `apply_retention(source)`: local deletions by age, remote deletions by age per backend (under its lock; a
  backend whose lock is held is skipped this round; a WORM / write-only / append-only backend is skipped), then
  the local size quota over objects every backend lists complete. Raises after the round if any backend
  failed, so rq retries it.

`JobRunner` runs an rq `SimpleWorker` (no fork) and an `RQScheduler` loop (for Retry intervals) in two daemon
threads of the uploader process, and enqueues with deterministic job ids so a task is never queued twice.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.lock import Lock
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler
from rq.timeouts import TimerDeathPenalty

from sealcam.bus import names

from .backends import Backend, make_backend
from .backends.base import BackendError
from .reconcile import reconcile
from .retention import local_deletions, remote_deletions, stale_class_marks
from .spool import Spool

log = logging.getLogger("sealcam.uploader.jobs")

QUEUE = "sealcam-uploader"
LOCK_TTL_S = 60.0  # refreshed every LOCK_TTL_S / 3 while a job holds it; expires by itself if the job dies
RETRY_MAX = 30
#: Short and capped: storage that comes back is caught up within ~10 s (a long backoff once left a 30 s outage
#: unreconciled for a further 20 s). rq repeats the last interval; after RETRY_MAX the job is enqueued anew.
RETRY_INTERVALS = [1, 2, 4, 8, 10]
RESULT_TTL_S = 3600
FAILURE_TTL_S = 86400
RECONCILE_TIMEOUT_S = 3600  # a big backlog over a slow uplink
RETENTION_TIMEOUT_S = 1800
RETENTION_JOB_ID = "retention"
RECENT_S = 300.0  # complete objects this young are reported in `known` too (records of them may still be queued)
ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
#: How often an idle worker thread looks for a stop request.
STOP_POLL_S = 1
WORKER_TTL_S = 16  # rq's blocking dequeue waits worker_ttl - 15 = 1 s, so a stop takes about 1 s


def reconcile_job_id(backend_name: str) -> str:
    return "reconcile-" + re.sub(r"[^A-Za-z0-9_-]", "_", backend_name)


def lock_key(backend_name: str) -> str:
    return names.uploader_lock(backend_name)


class BackendBusy(Exception):
    """Another job holds this backend's lock."""


class RetentionIncomplete(Exception):
    """Some backend failed during retention; the job is retried."""


# -- sources -----------------------------------------------------------------------------------------------
@dataclass
class _Source:
    data_dir: Path
    storage: list[Any]  # storage config models
    days: int | None
    max_bytes: int | None
    event_days: int | None = None  # retention of event-class objects (resolved: event_days, else days)


def spec_for(data_dir: str | Path, storage: list[Any], days: int | None, max_bytes: int | None,
             event_days: int | None = None) -> dict:
    """A secret-free, picklable description of the uploader's storage for job arguments. `storage`: config
    storage models (their SecretRefs dump as references, never values) or plain dicts. `event_days`: resolved
    retention of event-class objects (pass `days` when the config gives none)."""
    return {"data_dir": str(data_dir), "retention": {"days": days, "max_bytes": max_bytes, "event_days": event_days},
            "storage": [s if isinstance(s, dict) else s.model_dump() for s in storage]}


def backend_spec(b: Backend) -> dict | None:
    """Spec of a backend object built without a config (tests): a config model it keeps, or a local folder."""
    cfg = getattr(b, "cfg", None)
    if cfg is not None and hasattr(cfg, "model_dump"):
        return cfg.model_dump()
    from .backends.local import LocalBackend

    if isinstance(b, LocalBackend):
        return {"type": "local", "name": b.name, "path": str(b.root)}
    return None


def _load(source: str | dict) -> _Source:
    if isinstance(source, dict):
        from pydantic import TypeAdapter

        from sealcam.config.models import Storage

        ta = TypeAdapter(Storage)
        ret = source.get("retention") or {}
        return _Source(Path(source["data_dir"]), [ta.validate_python(s) for s in source["storage"]],
                       ret.get("days"), ret.get("max_bytes"), ret.get("event_days", ret.get("days")))
    from sealcam.config.loader import load_config

    sec = load_config(source).section_for("uploader")
    ret = sec["retention"]
    return _Source(Path(sec["data_dir"]), list(sec["storage"]), ret.days,
                   int(ret.max_gb * 1e9) if ret.max_gb else None,
                   ret.event_days if ret.event_days is not None else ret.days)


def _backend(src: _Source, name: str) -> Backend:
    for s in src.storage:
        if s.name == name:
            return make_backend(s)
    raise ValueError(f"no storage backend named {name!r}")


# -- the per-backend lock ----------------------------------------------------------------------------------
@contextmanager
def backend_lock(r: redis.Redis | None, name: str) -> Iterator[None]:
    """Hold `uploader:lock:<name>` (SET NX PX, refreshed by a small thread) or raise BackendBusy."""
    if r is None:  # called directly, outside rq
        yield
        return
    lock = Lock(r, lock_key(name), timeout=LOCK_TTL_S, thread_local=False)
    if not lock.acquire(blocking=False):
        raise BackendBusy(f"{name}: {lock_key(name)} is held by another job")
    done = threading.Event()

    def refresh() -> None:
        while not done.wait(LOCK_TTL_S / 3):
            try:
                lock.reacquire()
            except redis.RedisError as exc:  # the job itself notices a lost bus soon enough
                log.warning("%s: lock refresh failed: %s", name, exc)

    t = threading.Thread(target=refresh, name=f"lock-{name}", daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join(2)
        try:
            lock.release()
        except redis.RedisError as exc:  # expired (LockNotOwnedError) or bus gone: the TTL frees it
            log.warning("%s: lock release: %s", name, exc)


# -- job functions -----------------------------------------------------------------------------------------
def reconcile_backend(config_path: str | dict, backend_name: str) -> dict:
    """Send what `backend_name` lacks from the spool. Raises on any backend error (rq retries)."""
    src = _load(config_path)
    job = get_current_job()
    backend = _backend(src, backend_name)
    spool = Spool(src.data_dir)
    try:
        with backend_lock(job.connection if job else None, backend_name):
            snapshot_at = time.time()  # before reconcile() walks the spool: everything spooled by now is sent
            if job is not None:
                job.meta["snapshot_at"] = snapshot_at
                job.save_meta()
            snapshot, sent, conflicts = reconcile(backend, spool)
    finally:
        backend.close()
    for c in conflicts:
        log.error("%s: %s holds %d bytes but the spool has %d; left as is", backend_name, c.obj, c.end, c.start)
    known = {n: e.size for n, e in snapshot.items() if not e.complete or e.mtime >= snapshot_at - RECENT_S}
    if sent:
        log.info("%s: reconcile sent %d bytes", backend_name, sent)
    return {"backend": backend_name, "objects": len(snapshot), "sent": sent, "conflicts": len(conflicts),
            "snapshot_at": snapshot_at, "known": known}


def apply_retention(config_path: str | dict, now: float | None = None) -> dict:
    """Local (age, then quota) and remote (age) deletions. Raises RetentionIncomplete if a backend failed."""
    src = _load(config_path)
    now = time.time() if now is None else now
    job = get_current_job()
    r = job.connection if job else None
    spool = Spool(src.data_dir)
    out: dict[str, Any] = {"local": [], "remote": {}, "skipped": {}, "errors": {}}
    events = spool.event_objects()
    cls = {"event_days": src.event_days, "events": events}
    # 1. local by age first, so a reconcile never re-sends what remote retention is about to delete
    for n in local_deletions(spool.entries().values(), now, src.days, None, **cls):
        spool.delete(n)
        out["local"].append(n)
    # 2. remote by age, per backend, under its lock
    listings: dict[str, dict[str, int]] = {}
    for s in src.storage:
        try:
            b = make_backend(s)
        except (BackendError, OSError, ValueError) as exc:  # unreadable secret, bad backend settings
            out["errors"][s.name] = str(exc)
            continue
        try:
            with backend_lock(r, b.name):
                listing = b.list()
                listings[b.name] = listing
                doomed, reason = remote_deletions(listing, now, src.days, b.can_delete, **cls)
                if reason:
                    out["skipped"][b.name] = reason
                gone = []
                for n in doomed:
                    if not b.can_delete:  # S3: write-only credentials found out on the first delete
                        out["skipped"][b.name] = "credentials cannot delete"
                        break
                    b.delete(n)
                    gone.append(n)
                out["remote"][b.name] = gone
        except BackendBusy as exc:
            out["skipped"][b.name] = str(exc)
        except (BackendError, OSError, redis.RedisError) as exc:  # the others still get theirs; retried as a whole
            out["errors"][b.name] = str(exc)
        finally:
            b.close()
    # 3. local quota: oldest complete objects every backend lists whole
    if src.max_bytes is not None:
        entries = spool.entries()
        uploaded = {n for n, e in entries.items()
                    if e.complete and all(listings.get(s.name, {}).get(n) == e.size for s in src.storage)}
        for n in local_deletions(entries.values(), now, None, src.max_bytes, uploaded):
            spool.delete(n)
            out["local"].append(n)
    if not out["errors"]:  # 4. class marks of objects gone everywhere
        for n in stale_class_marks(events, set(spool.entries()), now, src.event_days):
            spool.forget_class(n)
    if out["errors"]:
        raise RetentionIncomplete(f"retention: {out['errors']} (after deleting {len(out['local'])} local objects)")
    return out


# -- enqueueing and the in-process worker ------------------------------------------------------------------
class _ThreadWorker(SimpleWorker):
    """SimpleWorker for a non-main thread: no signal handlers (the uploader owns SIGTERM), timeouts by timer."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        return None

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):  # noqa: ANN201
        """rq waits for a job without ever looking at a stop request (only a signal ends the wait, and this thread
        gets none): wait in rounds of STOP_POLL_S so `JobRunner.stop()` ends the thread within about that."""
        while not self._stop_requested:
            result = super().dequeue_job_and_maintain_ttl(timeout, STOP_POLL_S)
            if result is not None:
                return result
        return None


class _ThreadScheduler(RQScheduler):
    def _install_signal_handlers(self) -> None:
        return None

    @property
    def should_reacquire_locks(self) -> bool:  # retry every second, not every 10 min (stale lock after kill -9)
        return self._queue_names != self.acquired_locks


def _clone(r: redis.Redis) -> redis.Redis:
    """A client with r's connection settings (URL, ACL user, password, retries) and its own pool."""
    pool = r.connection_pool
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class,
                                                            **pool.connection_kwargs))


class JobRunner:
    def __init__(self, r: redis.Redis, source: str | dict, *, queue: str = QUEUE, name: str = "uploader",
                 retry_max: int = RETRY_MAX, retry_intervals: list[int] | None = None,
                 run_worker: bool = True) -> None:
        self.conn = _clone(r)
        self.source = source
        self.queue = Queue(queue, connection=self.conn)
        self.name = name
        self.retry_max = retry_max
        self.retry_intervals = list(retry_intervals or RETRY_INTERVALS)
        self.run_worker = run_worker
        self.stop_event = threading.Event()
        self.worker: _ThreadWorker | None = None
        self.scheduler: _ThreadScheduler | None = None
        self.threads: list[threading.Thread] = []

    # -- enqueue ---------------------------------------------------------------------------------------------
    def enqueue(self, func: Callable[..., Any], args: tuple, job_id: str, timeout: int) -> Job:
        """Enqueue once: an existing job with this id that is queued/started/scheduled is returned instead; a
        finished or failed one is replaced. `unique=True` makes the check-and-save atomic against a racer."""
        for _ in range(3):
            try:
                old = Job.fetch(job_id, connection=self.conn)
            except NoSuchJobError:
                old = None
            if old is not None:
                if old.get_status(refresh=False) in ACTIVE:
                    return old
                old.delete()
            try:
                return self.queue.enqueue(func, *args, job_id=job_id, unique=True, job_timeout=timeout,
                                          retry=Retry(max=self.retry_max, interval=self.retry_intervals),
                                          result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S,
                                          ttl=RESULT_TTL_S)
            except DuplicateJobError:
                continue
        return Job.fetch(job_id, connection=self.conn)

    def reconcile(self, backend_name: str) -> Job:
        return self.enqueue(reconcile_backend, (self.source, backend_name), reconcile_job_id(backend_name),
                            RECONCILE_TIMEOUT_S)

    def retention(self) -> Job:
        return self.enqueue(apply_retention, (self.source,), RETENTION_JOB_ID, RETENTION_TIMEOUT_S)

    def state(self, job: Job) -> tuple[str, dict | None]:
        """("active", meta) while queued/started/scheduled; ("done", result); ("failed", None)."""
        try:
            status = job.get_status(refresh=True)
        except NoSuchJobError:
            return "failed", None
        if status == JobStatus.FINISHED:
            return "done", job.return_value(refresh=True)
        if status in ACTIVE:
            job.refresh()
            return "active", dict(job.meta)
        return "failed", None

    def cleanup_stale(self, job_ids: list[str]) -> None:
        """At start, before our worker runs: a job of ours still marked started was left by a process that
        died (one uploader per sealed bus); delete it so it is enqueued afresh."""
        for jid in job_ids:
            try:
                job = Job.fetch(jid, connection=self.conn)
            except NoSuchJobError:
                continue
            if job.get_status(refresh=False) == JobStatus.STARTED:
                log.info("removing stale job %s left by a previous run", jid)
                job.delete()

    # -- worker threads --------------------------------------------------------------------------------------
    def start(self) -> JobRunner:
        if not self.run_worker:
            return self
        for target, n in ((self._work, "worker"), (self._schedule, "scheduler")):
            t = threading.Thread(target=target, name=f"rq-{n}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def _work(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.worker = _ThreadWorker([self.queue], connection=self.conn, worker_ttl=WORKER_TTL_S,
                                            name=f"{self.name}-{threading.get_ident()}-{int(time.time())}")
                self.worker.work(burst=False, with_scheduler=False, logging_level="WARNING")
            except Exception as exc:  # noqa: BLE001 - a lost bus is retried, never a dead thread
                log.warning("rq worker: %s (restarting)", exc)
            self.stop_event.wait(1.0)

    def _schedule(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.scheduler = _ThreadScheduler([self.queue], connection=self.conn, interval=1,
                                                  logging_level="WARNING")
                if self.stop_event.is_set():
                    break
                self.scheduler.work()
            except Exception as exc:  # noqa: BLE001
                log.warning("rq scheduler: %s (restarting)", exc)
            self.stop_event.wait(1.0)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; a job already running finishes (bounded by `timeout`, then abandoned: its lock
        expires and the next start enqueues it afresh)."""
        self.stop_event.set()
        if self.worker is not None:
            self.worker._stop_requested = True
        if self.scheduler is not None:
            self.scheduler.request_stop()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
