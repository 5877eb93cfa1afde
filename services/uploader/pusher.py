"""One thread per backend: live appends from a queue; on any error, reconcile with backoff until it succeeds.

A slow or failing backend never blocks the spool or the other backends: its queue is drained (the spool holds
everything) while it is in reconcile mode, and the live path resumes from the sizes reconcile left it with.

With `jobs` (a jobs.JobRunner), reconcile runs as the rq job `reconcile-<backend>` instead of in this thread;
the thread pauses (no live push to that backend) until the job finishes, then resumes from the job's `known`.
While paused it drops queued records spooled before the job's snapshot (`snapshot_at` in job.meta; the job
sends those) and keeps later ones; it trusts a result only if every record it dropped was spooled before that
result's snapshot, else it asks for another round. A job that failed all its retries is enqueued again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sealcam.bus.contract import SealedRecord

from .backends.base import Backend, BackendError
from .reconcile import reconcile
from .spool import Spool

log = logging.getLogger("sealcam.uploader")
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
QUEUE_MAX = 1024
JOB_POLL_S = 0.25  # how often a paused pusher looks at its reconcile job
JOB_AGAIN_S = 5.0  # wait before enqueueing another reconcile after one failed all its retries


@dataclass
class Item:
    rec: SealedRecord
    arrived: float  # time.time() when it came off the sealed bus
    t: float = field(default_factory=time.time)  # when it was handed over (after the spool fsync)


class BackendWorker:
    def __init__(self, backend: Backend, spool: Spool, jobs: Any = None) -> None:
        self.backend = backend
        self.spool = spool
        self.jobs = jobs  # jobs.JobRunner: reconcile as an rq job; None: reconcile in this thread
        self._job: Any = None  # the rq Job this thread is paused on
        self._last_drop = 0.0  # Item.t of the newest record dropped from the queue (job mode)
        self.q: queue.Queue[Item] = queue.Queue(QUEUE_MAX)
        self.known: dict[str, int] = {}  # bytes the backend holds per object (append backends; S3: parts)
        self.need_reconcile = True  # at start
        self.stopping = threading.Event()
        self.bytes_uploaded = 0
        self.errors = 0
        self.reconciles = 0
        self.oldest_pending: float | None = None  # arrival time of the oldest record not yet on this backend
        self.thread = threading.Thread(target=self._run, name=f"uploader-{backend.name}", daemon=True)
        self._idle = threading.Event()

    @property
    def healthy(self) -> bool:
        return not self.need_reconcile

    def start(self) -> BackendWorker:
        self.thread.start()
        return self

    def submit(self, rec: SealedRecord, arrived: float) -> None:
        if self.oldest_pending is None:
            self.oldest_pending = arrived
        try:
            self.q.put_nowait(Item(rec, arrived))
        except queue.Full:
            self._last_drop = time.time()
            self.need_reconcile = True  # the spool has it; reconcile will send it

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued (bounded by `timeout`), then stop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.q.empty() and not self.need_reconcile:
            time.sleep(0.05)
        self.stopping.set()
        self.thread.join(max(0.1, deadline - time.monotonic()))
        self.backend.close()

    # -- thread --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self.stopping.is_set():
            if self.need_reconcile and self.jobs is not None:
                wait = self._reconcile_job()
                if wait:
                    self.stopping.wait(wait)
                continue
            if self.need_reconcile:
                if self._reconcile():
                    backoff = BACKOFF_MIN_S
                else:
                    self.stopping.wait(backoff)
                    backoff = min(BACKOFF_MAX_S, backoff * 2)
                continue
            try:
                item = self.q.get(timeout=0.2)
            except queue.Empty:
                if self.q.empty():
                    self.oldest_pending = None
                continue
            try:
                self._push(item)
            except BackendError as exc:
                self.errors += 1
                log.warning("%s: live upload failed, reconciling: %s", self.backend.name, exc)
                self.need_reconcile = True
            except Exception:  # noqa: BLE001 - never let one backend's bug kill its thread silently
                self.errors += 1
                log.exception("%s: unexpected error, reconciling", self.backend.name)
                self.need_reconcile = True
            else:
                if self.q.empty():
                    self.oldest_pending = None

    def _push(self, item: Item) -> None:
        rec = item.rec
        b = self.backend
        obj = rec.object_name
        have = self.known.get(obj, 0)
        end = rec.offset + len(rec.data)
        if end <= have and not (rec.final and not b.append_supported):
            return  # already there (reconcile sent it)
        if rec.offset > have:
            raise BackendError(f"{obj}: live record at {rec.offset}, backend known to hold {have}")
        data = rec.data[have - rec.offset:]
        if b.append_supported:
            b.append(obj, have, data)
            self.known[obj] = end
        elif rec.final:
            b.complete(obj, self.spool.path(obj), end)
            self.known.pop(obj, None)
        else:
            b.append(obj, have, data)
            self.known[obj] = end
        self.bytes_uploaded += len(data)
        if rec.final and b.append_supported:
            self.known.pop(obj, None)

    def _reconcile(self) -> bool:
        self.reconciles += 1
        # Drain first: everything queued is in the spool already, and reconcile sends from the spool.
        drained_oldest = self.oldest_pending
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                break
        try:
            snapshot, sent, conflicts = reconcile(self.backend, self.spool)
        except BackendError as exc:
            self.errors += 1
            log.warning("%s: reconcile failed (will retry): %s", self.backend.name, exc)
            self.backend.close()
            return False
        except Exception:  # noqa: BLE001
            self.errors += 1
            log.exception("%s: reconcile failed (will retry)", self.backend.name)
            self.backend.close()
            return False
        for c in conflicts:
            log.error("%s: %s holds %d bytes but the spool has %d; left as is", self.backend.name, c.obj, c.end,
                      c.start)
        self.bytes_uploaded += sent
        self.known = {n: e.size for n, e in snapshot.items() if not e.complete}
        self.need_reconcile = False
        if self.q.empty() and self.oldest_pending == drained_oldest:
            self.oldest_pending = None
        if sent:
            log.info("%s: reconcile sent %d bytes", self.backend.name, sent)
        return True

    # -- job mode ------------------------------------------------------------------------------------------
    def _drop_queued(self, snapshot_at: float | None) -> None:
        """Drop queued records spooled before `snapshot_at` (all while no snapshot is known): the job sends them."""
        while True:
            with self.q.mutex:
                if not self.q.queue or (snapshot_at is not None and self.q.queue[0].t >= snapshot_at):
                    return
            item = self.q.get_nowait()  # this thread is the only consumer: it is that head
            self._last_drop = max(self._last_drop, item.t)

    def _reconcile_job(self) -> float:
        """Paused on this backend's reconcile job; returns seconds to wait before looking again (0: now)."""
        try:
            if self._job is None:
                self.backend.close()  # the live connection may be broken; reopened on the next live push
                self._job = self.jobs.reconcile(self.backend.name)
                self.reconciles += 1
            state, info = self.jobs.state(self._job)
        except Exception as exc:  # noqa: BLE001 - sealed bus unreachable: the spool has everything, wait
            log.warning("%s: cannot enqueue/read the reconcile job: %s", self.backend.name, exc)
            self._drop_queued(None)
            return JOB_AGAIN_S
        if state == "active":
            self._drop_queued((info or {}).get("snapshot_at"))
            return JOB_POLL_S
        self._job = None
        if state != "done" or not info:
            self.errors += 1
            self._drop_queued(None)
            log.warning("%s: reconcile job failed all its retries; enqueueing another", self.backend.name)
            return JOB_AGAIN_S
        if self._last_drop >= info["snapshot_at"]:
            return 0.0  # a record dropped here was spooled after that snapshot: another round
        self.known = dict(info["known"])
        self.bytes_uploaded += info["sent"]
        self.need_reconcile = False
        if self.q.empty():
            self.oldest_pending = None
        return 0.0
