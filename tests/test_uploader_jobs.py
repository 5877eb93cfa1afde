"""Backfill and retention as rq jobs on a real sealed bus, run by the uploader's in-process worker thread."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rq.job import Job
from servers import wait_until

from sealcam.bus import names
from sealcam.bus.contract import SealedRecord
from services.uploader import jobs
from services.uploader.backends.local import LocalBackend
from services.uploader.jobs import RETRY_MAX, JobRunner, reconcile_job_id, spec_for
from services.uploader.service import Uploader
from services.uploader.spool import Spool

HANDLE = "ef" * 8


def obj_name(seq: int, hours_ago: float = 0) -> str:
    return names.object_name(HANDLE, seq, int((time.time() - hours_ago * 3600) * 1e6))


def spool_obj(spool: Spool, seq: int, n: int = 3, size: int = 1000, final: bool = True, hours_ago: float = 0) -> str:
    o = obj_name(seq, hours_ago)
    for i in range(n):
        spool.append(SealedRecord(HANDLE, seq, i * size, os.urandom(size), final and i == n - 1, o))
    return o


def same(spool: Spool, root: Path, objs: list[str]) -> bool:
    return all((root / o).exists() and (root / o).read_bytes() == spool.path(o).read_bytes() for o in objs)


def wait_job(job: Job, timeout: float) -> str:
    assert wait_until(lambda: job.get_status(refresh=True) in ("finished", "failed"), timeout), job.get_status()
    return job.get_status()


def test_reconcile_job_by_worker_thread_and_dedup(sealed_redis, tmp_path: Path) -> None:  # noqa: ANN001
    spool = Spool(tmp_path / "data")
    objs = [spool_obj(spool, 1), spool_obj(spool, 2, final=False)]
    remote = tmp_path / "remote"
    (remote / objs[0]).parent.mkdir(parents=True)
    (remote / objs[0]).write_bytes(spool.path(objs[0]).read_bytes()[:1500])  # remote lacks bytes
    src = spec_for(tmp_path / "data", [{"type": "local", "name": "r1", "path": str(remote)}], None, None)
    runner = JobRunner(sealed_redis, src, retry_intervals=[1])
    j1 = runner.reconcile("r1")
    j2 = runner.reconcile("r1")  # queued: the same job, not a second one
    assert j1.id == j2.id == reconcile_job_id("r1")
    assert sealed_redis.llen("rq:queue:" + jobs.QUEUE) == 1
    runner.start()
    try:
        assert wait_job(j1, 10) == "finished"
        res = j1.return_value()
        assert res["sent"] == 3000 + 1500 and res["known"][objs[1]] == 3000 and res["conflicts"] == 0
        assert same(spool, remote, objs)
        assert sealed_redis.get(jobs.lock_key("r1")) is None  # lock released
        j3 = runner.reconcile("r1")  # finished one is replaced by a fresh run
        assert wait_job(j3, 10) == "finished" and j3.return_value()["sent"] == 0
    finally:
        runner.stop()


def test_reconcile_job_retried_until_backend_appears(sealed_redis, tmp_path: Path) -> None:  # noqa: ANN001
    spool = Spool(tmp_path / "data")
    objs = [spool_obj(spool, 1)]
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the remote's parent should be")  # root cannot mkdir under a file
    remote = blocker / "remote"
    src = spec_for(tmp_path / "data", [{"type": "local", "name": "r1", "path": str(remote)}], None, None)
    runner = JobRunner(sealed_redis, src, retry_max=5, retry_intervals=[1, 1, 1, 1, 1]).start()
    try:
        job = runner.reconcile("r1")
        assert wait_until(lambda: (job.refresh() or True) and job.retries_left is not None
                          and job.retries_left <= 3, 10), "not retried"
        assert job.get_status(refresh=True) in ("scheduled", "queued", "started")
        assert runner.reconcile("r1").id == job.id  # still one job while it waits for its retry
        blocker.unlink()  # the outage ends
        assert wait_job(job, 10) == "finished"
        assert same(spool, remote, objs)
    finally:
        runner.stop()


def test_retention_job_local_remote_and_worm(sealed_redis, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    spool = Spool(tmp_path / "data")
    old, new = spool_obj(spool, 1, hours_ago=24 * 40), spool_obj(spool, 2)
    open_old = spool_obj(spool, 3, final=False, hours_ago=24 * 40)
    roots = {n: tmp_path / n for n in ("del", "worm")}
    for root in roots.values():
        for o in (old, new):
            (root / o).parent.mkdir(parents=True, exist_ok=True)
            (root / o).write_bytes(spool.path(o).read_bytes())
    real = jobs.make_backend

    def make(cfg):  # noqa: ANN001, ANN202 - "worm" stands for a backend that cannot delete
        b = real(cfg)
        if b.name == "worm":
            b.can_delete = False
        return b

    monkeypatch.setattr(jobs, "make_backend", make)
    src = spec_for(tmp_path / "data", [{"type": "local", "name": n, "path": str(p)} for n, p in roots.items()],
                   30, None)
    runner = JobRunner(sealed_redis, src).start()
    try:
        job = runner.retention()
        assert wait_job(job, 10) == "finished", job.latest_result()
        res = job.return_value()
        assert res["local"] == [old] and res["remote"] == {"del": [old], "worm": []} and "worm" in res["skipped"]
        assert set(spool.entries()) == {new, open_old}  # an incomplete object is never deleted
        assert not (roots["del"] / old).exists() and (roots["del"] / new).exists()
        assert (roots["worm"] / old).exists()
    finally:
        runner.stop()


def test_uploader_outage_reconciled_by_job(sealed_bus, sealed_redis, tmp_path: Path) -> None:  # noqa: ANN001
    remote = tmp_path / "remote"
    up = Uploader(sealed_bus.url, tmp_path / "data", [LocalBackend("remote", remote)], discover_s=0.1,
                  health_s=0.5, job_retry_intervals=[1, 1, 2, 2, 2])
    import threading

    t = threading.Thread(target=up.run, daemon=True)
    t.start()
    seq = 0

    def publish(n: int = 2, size: int = 2000) -> str:
        nonlocal seq
        o = obj_name(seq)
        for i in range(n):
            rr = SealedRecord(HANDLE, seq, i * size, os.urandom(size), i == n - 1, o)
            sealed_redis.xadd(names.sealed_rec(HANDLE), rr.to_fields(), maxlen=names.MAXLEN_SEALED_REC)
        seq += 1
        return o

    try:
        objs = [publish()]
        assert wait_until(lambda: same(up.spool, remote, objs), 3), "live path"
        moved = tmp_path / "remote.away"
        remote.rename(moved)
        remote.parent.joinpath("remote").write_text("not a folder")  # every write to the remote fails now
        for _ in range(4):
            objs.append(publish())
            time.sleep(0.3)
        assert wait_until(lambda: all(up.spool.size(o) == 4000 for o in objs), 3), "not spooled during outage"
        assert wait_until(lambda: not up.workers[0].healthy, 3)
        job = Job.fetch(reconcile_job_id("remote"), connection=sealed_redis)
        assert wait_until(lambda: (job.refresh() or True) and (job.retries_left or 0) < RETRY_MAX, 6), "job not retried"
        remote.unlink()
        moved.rename(remote)  # the outage ends
        objs.append(publish())
        assert wait_until(lambda: same(up.spool, remote, objs) and up.workers[0].healthy, 15), "not caught up"
        objs.append(publish())  # live again
        assert wait_until(lambda: same(up.spool, remote, objs), 3)
        assert LocalBackend("x", remote).list() == {o: up.spool.size(o) for o in objs}
    finally:
        up.stop()
        t.join(15)
    assert not t.is_alive()
