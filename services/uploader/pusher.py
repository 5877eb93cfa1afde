"""One thread per backend: live appends from a queue; on any error, reconcile with backoff until it succeeds.

A slow or failing backend never blocks the spool or the other backends: its queue is drained (the spool holds
everything) while it is in reconcile mode, and the live path resumes from the sizes reconcile left it with.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from sealcam.bus.contract import SealedRecord

from .backends.base import Backend, BackendError
from .reconcile import reconcile
from .spool import Spool

log = logging.getLogger("sealcam.uploader")
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
QUEUE_MAX = 1024


@dataclass
class Item:
    rec: SealedRecord
    arrived: float  # time.time() when it came off the sealed bus


class BackendWorker:
    def __init__(self, backend: Backend, spool: Spool) -> None:
        self.backend = backend
        self.spool = spool
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
