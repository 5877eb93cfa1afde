"""Uploader: spool, reconcile and retention logic, and each backend against a real server started here:
OpenSSH sshd (private config, SFTP), pyftpdlib (FTP), SeaweedFS (S3 with Object Lock)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from servers import Ftpd, Sshd, seaweedfs, seaweedfs_available, sshd_available, wait_until

from sealcam.bus import names
from sealcam.bus.contract import SealedRecord
from sealcam.config.models import FtpStorage, S3Storage, SftpStorage
from services.uploader.backends import make_backend
from services.uploader.backends.local import LocalBackend
from services.uploader.reconcile import Action, plan
from services.uploader.retention import local_deletions, object_time, remote_deletions
from services.uploader.service import Uploader
from services.uploader.spool import Spool, SpoolEntry, SpoolError

HANDLE = "ab" * 8
HANDLE2 = "cd" * 8


def rec(obj: str, offset: int, data: bytes, final: bool = False, handle: str = HANDLE, seq: int = 0) -> SealedRecord:
    return SealedRecord(handle, seq, offset, data, final, obj)


def obj_name(seq: int, handle: str = HANDLE, hours_ago: float = 0) -> str:
    return names.object_name(handle, seq, int((time.time() - hours_ago * 3600) * 1e6))


class Producer:
    """Publishes objects as sealed records (like crypto) on the sealed bus."""

    def __init__(self, r, handle: str = HANDLE) -> None:  # noqa: ANN001
        self.r, self.handle, self.seq = r, handle, 0

    def publish(self, n_records: int, size: int = 3000, final: bool = True) -> str:
        obj = obj_name(self.seq, self.handle)
        off = 0
        for i in range(n_records):
            data = os.urandom(size)
            rr = SealedRecord(self.handle, self.seq, off, data, final and i == n_records - 1, obj)
            self.r.xadd(names.sealed_rec(self.handle), rr.to_fields(), maxlen=names.MAXLEN_SEALED_REC)
            off += size
        self.seq += 1
        return obj


def run_uploader(up: Uploader) -> threading.Thread:
    t = threading.Thread(target=up.run, daemon=True)
    t.start()
    return t


def same_as_spool(spool: Spool, listing_read, objs) -> bool:  # noqa: ANN001
    return all(listing_read(o) == spool.path(o).read_bytes() for o in objs)


# ---------------------------------------------------------------------------------------------------------------
# pure / local
# ---------------------------------------------------------------------------------------------------------------

def test_spool_append_idempotent_and_refuses_holes(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    o = obj_name(1)
    assert s.append(rec(o, 0, b"hello "))
    assert not s.append(rec(o, 0, b"hello "))  # redelivery: skipped
    with pytest.raises(SpoolError, match="differs"):
        s.append(rec(o, 0, b"HELLO "))
    with pytest.raises(SpoolError, match="hole"):
        s.append(rec(o, 100, b"x"))
    assert s.append(rec(o, 6, b"world", final=True))
    assert s.path(o).read_bytes() == b"hello world" and s.is_complete(o)
    assert not s.append(rec(o, 6, b"world", final=True))
    with pytest.raises(SpoolError):
        s.append(rec(o, 11, b"more"))
    e = s.entries()[o]
    assert (e.size, e.complete) == (11, True)
    assert s.path(o).stat().st_blocks * 512 >= 0  # a real file, never sparse (hole refused above)


def test_reconcile_plan() -> None:
    sp = {"a": SpoolEntry("a", 10, True, 0), "b": SpoolEntry("b", 5, False, 0), "c": SpoolEntry("c", 7, True, 0)}
    assert plan(sp, {"a": 10, "b": 2, "x": 9}, {}, True) == [Action("append", "b", 2, 5), Action("append", "c", 0, 7)]
    assert plan(sp, {"a": 12}, {}, True)[0] == Action("conflict", "a", 10, 12)
    # S3-like: whole objects for complete ones, parts for the unfinished one
    assert plan(sp, {"a": 10}, {"b": 3, "c": 7}, False) == [Action("append", "b", 3, 5),
                                                            Action("complete", "c", 0, 7)]


def test_retention_logic() -> None:
    now = time.time()
    old, new, open_ = obj_name(1, hours_ago=24 * 40), obj_name(2, hours_ago=2), obj_name(3, hours_ago=24 * 50)
    assert abs(object_time(new) - (now - 2 * 3600)) < 3600
    es = [SpoolEntry(old, 100, True, now), SpoolEntry(new, 100, True, now), SpoolEntry(open_, 100, False, now)]
    assert local_deletions(es, now, 30, None) == [old]  # the incomplete one is never deleted
    assert local_deletions(es, now, None, 250) == [old]  # quota: oldest complete first
    assert local_deletions(es, now, None, 250, uploaded={new}) == [new]  # only uploaded ones for quota
    assert local_deletions(es, now, None, 50) == [old, new]  # never the incomplete one, even over quota
    assert remote_deletions({old: 1, new: 1}, now, 30, True) == ([old], None)
    got, why = remote_deletions({old: 1}, now, 30, False)
    assert got == [] and "cannot delete" in why


def test_uploader_has_no_identity_or_decryption_path() -> None:
    code = ("import sys, services.uploader.service, services.uploader.__main__, services.uploader.backends.s3, "
            "services.uploader.backends.sftp, services.uploader.backends.ftp, services.uploader.backends.local;"
            "bad=[m for m in sys.modules if m.startswith(('sealcam.keys','sealcam.format.decrypt'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stdout + r.stderr


def test_local_backend_live_and_health(sealed_bus, sealed_redis, tmp_path: Path) -> None:  # noqa: ANN001
    remote = LocalBackend("remote", tmp_path / "remote")
    up = Uploader(sealed_bus.url, tmp_path / "data", [remote], discover_s=0.1, health_s=0.5)
    t = run_uploader(up)
    p = Producer(sealed_redis)
    t0 = time.monotonic()
    objs = [p.publish(4), p.publish(3, final=False)]
    assert wait_until(lambda: remote.list() == {o: up.spool.size(o) for o in objs} and up.spool.size(objs[1]) == 9000,
                      2.0), "not on the remote within 2 s"
    assert time.monotonic() - t0 < 2.0
    assert same_as_spool(up.spool, lambda o: (remote.root / o).read_bytes(), objs)
    assert wait_until(lambda: sealed_redis.xpending(names.sealed_rec(HANDLE), names.GROUP_UPLOADER)["pending"] == 0, 2)
    time.sleep(0.6)
    up.stop()
    t.join(10)
    assert not t.is_alive()
    from sealcam.bus.contract import Health

    last = Health.from_fields(sealed_redis.xrevrange(names.SEALED_HEALTH, count=1)[0][1])
    assert last.service == "uploader" and last.counters["up_remote_bytes"] == 21000
    assert last.counters["bytes_spooled"] == 21000 and last.counters["spool_bytes"] == 21000
    # a restart with the same spool and remote resends nothing and reads nothing twice
    up2 = Uploader(sealed_bus.url, tmp_path / "data", [LocalBackend("remote", tmp_path / "remote")], discover_s=0.1)
    t2 = run_uploader(up2)
    time.sleep(1.0)
    up2.stop()
    t2.join(10)
    assert up2.records_spooled == 0 and up2.workers[0].bytes_uploaded == 0


def test_sigterm_exits_zero(sealed_bus, sealed_redis, tmp_path: Path) -> None:  # noqa: ANN001
    cfg = tmp_path / "c.yaml"
    r = subprocess.Popen([sys.executable, "-m", "services.uploader", "--data-dir", str(tmp_path / "d"),
                          "--sealed-url", sealed_bus.url], cwd=Path(__file__).resolve().parents[1],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    del cfg
    p = Producer(sealed_redis)
    o = p.publish(2)
    remote = tmp_path / "d" / "remote" / o
    ok = wait_until(lambda: remote.exists() and remote.stat().st_size == 6000, 15)
    r.send_signal(signal.SIGTERM)
    out = r.communicate(timeout=15)[0].decode()
    assert ok, out
    assert r.returncode == 0, out


# ---------------------------------------------------------------------------------------------------------------
# real servers
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def sshd(tmp_path: Path):  # noqa: ANN201
    if why := sshd_available():
        pytest.skip(why)
    s = Sshd(tmp_path / "sshd")
    s.start()
    yield s
    s.stop()


def sftp_backend(s: Sshd, remote: Path):  # noqa: ANN201
    return make_backend(SftpStorage.model_validate({
        "type": "sftp", "name": "sftp-main", "host": "127.0.0.1", "port": s.port, "user": "root",
        "path": str(remote), "key_file": str(s.d / "client_key"), "known_hosts_file": str(s.d / "known_hosts")}))


@pytest.fixture
def ftpd(tmp_path: Path):  # noqa: ANN201
    f = Ftpd(tmp_path / "ftphome", tmp_path / "ftp.pw")
    yield f
    f.stop()


def ftp_backend(f: Ftpd, pwfile: Path):  # noqa: ANN201
    return make_backend(FtpStorage.model_validate({
        "type": "ftp", "name": "ftp-replica", "host": "127.0.0.1", "port": f.port, "user": "cam",
        "password_file": str(pwfile), "path": "/footage", "tls": False}))


def test_sftp_and_ftp_live_then_sftp_outage_reconciled(sealed_bus, sealed_redis, sshd, ftpd,  # noqa: ANN001
                                                       tmp_path: Path) -> None:
    sremote = tmp_path / "sftp-remote"
    sftp = sftp_backend(sshd, sremote)
    ftp = ftp_backend(ftpd, tmp_path / "ftp.pw")
    fremote = tmp_path / "ftphome" / "footage"
    up = Uploader(sealed_bus.url, tmp_path / "data", [sftp, ftp], discover_s=0.1, health_s=0.5)
    t = run_uploader(up)
    p = Producer(sealed_redis)

    def on_both(objs: list[str]) -> bool:
        return all((d / o).exists() and (d / o).read_bytes() == up.spool.path(o).read_bytes()
                   for d in (sremote, fremote) for o in objs)

    objs = [p.publish(3)]
    assert wait_until(lambda: on_both(objs), 2.0), "live: not on both remotes within 2 s"
    # partial object arrives live too
    objs.append(p.publish(2, final=False))
    assert wait_until(lambda: on_both(objs), 2.0)

    # SFTP outage of ~6 s while records keep coming: FTP keeps up, the spool grows
    sshd.stop()
    t_out = time.monotonic()
    while time.monotonic() - t_out < 6:
        objs.append(p.publish(2))
        time.sleep(0.5)
    assert wait_until(lambda: all((fremote / o).exists() and (fremote / o).stat().st_size == up.spool.size(o)
                                  for o in objs), 2.0), "second backend blocked by the first's outage"
    assert not all((sremote / o).exists() for o in objs)
    assert not up.workers[0].healthy and up.workers[0].errors > 0
    h = up.health()
    assert h.counters["up_sftp_main_ok"] == 0 and h.lag_ms > 1000
    sshd.start()
    assert wait_until(lambda: on_both(objs), 40.0), "reconcile did not catch up"
    assert {o: s for o, s in sftp.list().items()} == {o: up.spool.size(o) for o in objs}
    assert ftp.list() == {o: up.spool.size(o) for o in objs}
    up.stop()
    t.join(10)


# ---------------------------------------------------------------------------------------------------------------
# S3 (SeaweedFS)
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):  # noqa: ANN001, ANN201
    if why := seaweedfs_available():
        pytest.skip(why)
    with seaweedfs(tmp_path_factory.mktemp("weed")) as sw:
        yield sw


def s3_backend(sw, bucket: str, lock: bool):  # noqa: ANN001, ANN201
    cfg = {"type": "s3", "name": f"s3-{bucket}", "endpoint_url": sw["url"], "bucket": bucket, "prefix": "cams/",
           "access_key_id_file": str(sw["dir"] / "ak"), "secret_access_key_file": str(sw["dir"] / "sk")}
    if lock:
        cfg["object_lock"] = {"mode": "governance", "days": 1}
    return make_backend(S3Storage.model_validate(cfg))


@pytest.mark.parametrize("bucket,lock", [("locked", True), ("plain", False)])
def test_s3_parts_live_and_whole_object_on_final(seaweed, sealed_bus, sealed_redis, tmp_path: Path,  # noqa: ANN001
                                                 bucket: str, lock: bool) -> None:
    s3 = s3_backend(seaweed, bucket, lock)
    up = Uploader(sealed_bus.url, tmp_path / "data", [s3], discover_s=0.1)
    t = run_uploader(up)
    p = Producer(sealed_redis)
    c = seaweed["client"]
    open_obj = p.publish(3, final=False)
    assert wait_until(lambda: s3.list_partial().get(open_obj) == 9000, 2.0), "parts not live within 2 s"
    assert open_obj not in s3.list()
    done = p.publish(4)
    assert wait_until(lambda: s3.list().get(done) == 12000, 3.0)
    body = c.get_object(Bucket=bucket, Key="cams/" + done)["Body"].read()
    assert body == up.spool.path(done).read_bytes()

    def parts_of(obj: str) -> list[str]:
        return [o["Key"] for o in c.list_objects_v2(Bucket=bucket, Prefix=f"cams/{obj}.parts/").get("Contents", [])]

    if lock:
        ret = c.get_object_retention(Bucket=bucket, Key="cams/" + done)["Retention"]
        assert ret["Mode"] == "GOVERNANCE"
        assert ret["RetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
        assert not s3.can_delete
    else:  # parts removed once the whole object is there (just after it appears: wait, do not race it)
        assert wait_until(lambda: parts_of(done) == [], 2.0), parts_of(done)
    # reconcile (as after an outage) sends nothing more
    from services.uploader.reconcile import reconcile

    assert reconcile(s3, up.spool)[1] == 0
    up.stop()
    t.join(10)
