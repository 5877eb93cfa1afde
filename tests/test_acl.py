"""Bus ACL users (sealcam/bus/acl.py) on a real embedded server: each service can do what it needs, no more."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sealcam.bus import acl, names
from sealcam.bus.client import BusAuth, connect
from sealcam.bus.embedded import EmbeddedBus
from sealcam.config import SecretRef, default_config
from sealcam.config.sections import SERVICES

HANDLE = "ab" * 8
REC = names.sealed_rec(HANDLE)
CAM = "cam1"


def _pw(bus: str) -> dict[str, str]:
    return {svc: f"{bus}-{svc}-pw-0123456789" for svc in acl.users(bus)}


@pytest.fixture
def buses(tmp_path: Path) -> Iterator[dict[str, EmbeddedBus]]:
    run = tmp_path / "run"
    run.mkdir()
    started: dict[str, EmbeddedBus] = {}
    try:
        for bus, persist in ((names.PLAIN, False), (names.SEALED, True)):
            f = run / f"{bus}.acl"
            f.write_text(acl.render_acl(bus, _pw(bus)))
            started[bus] = EmbeddedBus(run, bus, persist=persist, aclfile=f).start()
        yield started
    finally:
        for b in started.values():
            b.stop()


def user(buses: dict[str, EmbeddedBus], bus: str, svc: str) -> redis.Redis:
    r = connect(buses[bus].url, username=svc, password=_pw(bus)[svc], name=f"{svc}-test")
    assert r.ping()
    return r


def denied(fn, *args, **kw) -> None:  # noqa: ANN001
    with pytest.raises(redis.exceptions.NoPermissionError):
        fn(*args, **kw)


# ------------------------------------------------------------------------------------------- rendering
def test_render_is_deterministic_and_has_no_plaintext() -> None:
    for bus in acl.BUSES:
        pw = _pw(bus)
        text = acl.render_acl(bus, pw)
        assert text == acl.render_acl(bus, dict(reversed(pw.items())))
        for p in pw.values():
            assert p not in text and acl.password_hash(p) in text
        lines = text.splitlines()
        assert lines[0] == "user default reset off"
        assert [ln.split()[1] for ln in lines[1:]] == list(acl.users(bus))
        for bad in ("flushall", "config", "keys", "debug", "acl", "module", "shutdown", "nopass", "allkeys",
                    "allcommands", "~*", "+@dangerous", "+@admin"):
            assert f" {bad} " not in f" {text.lower().replace('(', ' ').replace(')', ' ')} ".replace("\n", " ")
    assert "uploader" not in acl.users(names.PLAIN)
    with pytest.raises(ValueError, match="no password"):
        acl.render_acl(names.SEALED, {"crypto": "x"})
    with pytest.raises(ValueError, match="white space"):
        acl.render_acl(names.PLAIN, {**_pw(names.PLAIN), "crypto": "a b"})


def test_ensure_passwords_makes_private_files_once(tmp_path: Path) -> None:
    d = tmp_path / "bus"
    first = acl.ensure_passwords(d)
    assert set(first) == {"plain", "sealed"} and set(first["sealed"]) == {"crypto", "uploader", "watchdog"}
    files = sorted(p.name for p in d.iterdir())
    assert files == sorted(acl.password_file_name(b, s) for b, s in acl.pairs())
    assert all((d / f).stat().st_mode & 0o777 == 0o600 for f in files)
    assert acl.ensure_passwords(d) == first  # kept, not regenerated
    assert len({p for m in first.values() for p in m.values()}) == len(files)


def test_sections_give_each_service_only_its_own_password_files(tmp_path: Path) -> None:
    cfg = default_config(tmp_path)
    cfg = cfg.model_copy(update={"buses": cfg.buses.model_copy(update={"acl_dir": tmp_path / "bus"})})
    seen = {}
    for svc in SERVICES:
        sec = cfg.section_for(svc)
        seen[svc] = {k: v for k, v in sec.items() if k.endswith("_auth")}
        for k, v in seen[svc].items():
            bus = k.removesuffix("_auth")
            assert v == BusAuth(svc, SecretRef.file(tmp_path / "bus" / f"{bus}-{svc}.pass"))
    assert set(seen["uploader"]) == {"sealed_auth"} and set(seen["watchdog"]) == {"sealed_auth"}
    assert set(seen["recorder"]) == {"plain_auth"} and set(seen["crypto"]) == {"plain_auth", "sealed_auth"}
    assert default_config(tmp_path).section_for("uploader")["sealed_auth"] is None  # no ACLs configured


# ------------------------------------------------------------------------------------------- the server
def test_default_user_is_off_and_wrong_password_refused(buses: dict[str, EmbeddedBus]) -> None:
    for bus in acl.BUSES:
        with pytest.raises(redis.AuthenticationError):
            _raw(buses[bus], None, None).ping()
        with pytest.raises(redis.AuthenticationError):
            _raw(buses[bus], "crypto", "wrong").ping()
        with pytest.raises(redis.AuthenticationError):
            _raw(buses[bus], "default", "").ping()
    with pytest.raises(redis.AuthenticationError):  # the uploader has no user on the plain bus at all
        _raw(buses["plain"], "uploader", _pw("sealed")["uploader"]).ping()


def _raw(bus: EmbeddedBus, username: str | None, password: str | None) -> redis.Redis:
    """No retries (connect() retries connection errors, an auth failure among them, for ~10 s)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(unix_socket_path=str(bus.socket), username=username, password=password,
                       retry=Retry(NoBackoff(), 0))


def test_connect_with_auth_reads_the_password_file(buses: dict[str, EmbeddedBus], tmp_path: Path) -> None:
    f = tmp_path / "sealed-watchdog.pass"
    f.write_text(_pw("sealed")["watchdog"] + "\n")
    r = connect(buses["sealed"].url, auth=BusAuth("watchdog", SecretRef.file(f)))
    assert r.time() and r.client_getname() is None


def test_plain_bus_users(buses: dict[str, EmbeddedBus]) -> None:
    rec, cry, mot = (user(buses, "plain", s) for s in ("recorder", "crypto", "motion"))
    frag, ev = names.plain_frag(CAM), names.plain_event(CAM)
    # crypto creates its groups first (as it does), the recorder produces
    for s in (frag, ev, names.PLAIN_HEALTH):
        cry.xgroup_create(s, names.GROUP_CRYPTO, id="0", mkstream=True)
    rec.xadd(frag, {"kind": "init"}, maxlen=names.MAXLEN_FRAG, approximate=True)
    rec.xadd(ev, {"t": "feed"}, maxlen=names.MAXLEN_EVENT, approximate=True)
    rec.xadd(names.plain_detect(CAM), {"k": "v"}, maxlen=names.MAXLEN_DETECT, approximate=True)
    rec.xadd(names.PLAIN_HEALTH, {"h": "1"}, maxlen=names.MAXLEN_HEALTH, approximate=True)
    assert rec.xrevrange(frag, count=1) and rec.xrevrange(ev, count=1)
    rec.set(names.heartbeat_key("recorder", "i1"), "123", ex=names.HEARTBEAT_TTL_S)
    # the recorder reads no group, deletes nothing, touches no other service's keys
    denied(rec.xreadgroup, names.GROUP_CRYPTO, "x", {frag: ">"})
    denied(rec.xgroup_create, frag, "mine", id="0")
    denied(rec.delete, frag)
    denied(rec.xtrim, frag, maxlen=0)
    denied(rec.set, names.heartbeat_key("crypto", "i1"), "1")
    denied(rec.get, names.heartbeat_key("recorder", "i1"))
    denied(rec.set, frag, "overwrite")
    # the latest init segment beside the trimmed stream: the recorder writes it, crypto and motion only read it
    init_key = names.plain_init(frag)
    rec.hset(init_key, mapping={"kind": "init", "data": "x"})
    denied(rec.hgetall, init_key)
    denied(rec.hset, names.PLAIN_HEALTH + ":x", mapping={"a": "b"})
    assert cry.hgetall(init_key)[b"kind"] == b"init" and mot.hgetall(init_key)[b"data"] == b"x"
    denied(cry.hset, init_key, mapping={"data": "forged"})
    denied(mot.hset, init_key, mapping={"data": "forged"})
    denied(cry.delete, init_key)
    # crypto: consume, read back the init segment, heartbeat, read others' heartbeats
    resp = cry.xreadgroup(names.GROUP_CRYPTO, "crypto-1", {frag: ">", ev: ">", names.PLAIN_HEALTH: ">"}, count=16)
    assert sum(len(e) for _s, e in resp) == 3
    for s, entries in resp:
        cry.xack(s, names.GROUP_CRYPTO, *[i for i, _f in entries])
    assert cry.xrevrange(frag, count=2)
    cry.set(names.heartbeat_key("crypto", "crypto-1"), "1", ex=names.HEARTBEAT_TTL_S)
    assert list(cry.scan_iter(match="hb:*", count=100))
    assert cry.get(names.heartbeat_key("recorder", "i1")) == b"123"
    denied(cry.xadd, frag, {"x": "y"})  # crypto never writes the plain bus's video
    denied(cry.set, names.heartbeat_key("recorder", "i1"), "forged")
    denied(cry.xreadgroup, names.GROUP_CRYPTO, "crypto-1", {names.plain_detect(CAM): ">"})
    for cmd in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("ACL", "LIST"),
                ("MODULE", "LIST"), ("SHUTDOWN",), ("FLUSHDB",), ("CLIENT", "LIST"), ("CLIENT", "KILL", "ID", "1")):
        for r in (rec, cry, mot):
            denied(r.execute_command, *cmd)
    for r in (rec, cry, mot):  # DEBUG is off server-wide (enable-debug-command no); the ACL refuses it too
        with pytest.raises(redis.ResponseError):
            r.execute_command("DEBUG", "SLEEP", "0")
    # motion: reads video in its group, writes events and health
    mot.xgroup_create(frag, names.GROUP_MOTION, id="0")
    assert mot.xreadgroup(names.GROUP_MOTION, "m1", {frag: ">"})
    mot.xadd(ev, {"t": "motion"})
    mot.xadd(names.PLAIN_HEALTH, {"h": "1"})
    mot.set(names.heartbeat_key("motion", "m1"), "1", ex=5)
    denied(mot.xadd, frag, {"x": "y"})


def test_sealed_bus_users(buses: dict[str, EmbeddedBus]) -> None:
    cry, upl, wd = (user(buses, "sealed", s) for s in ("crypto", "uploader", "watchdog"))
    # crypto: the uploader's group on each record stream, records, trimming, health, heartbeat
    cry.xgroup_create(REC, names.GROUP_UPLOADER, id="0", mkstream=True)
    for i in range(5):
        cry.xadd(REC, {"seq": str(i)})
    assert cry.xlen(REC) == 5 and cry.xinfo_groups(REC) and cry.xrevrange(REC, count=2)
    assert cry.xpending(REC, names.GROUP_UPLOADER)["pending"] == 0
    cry.xadd(names.SEALED_HEALTH, {"h": "1"}, maxlen=names.MAXLEN_HEALTH, approximate=True)
    cry.set(names.heartbeat_key("crypto", "c1"), "1", ex=names.HEARTBEAT_TTL_S)
    denied(cry.xreadgroup, names.GROUP_UPLOADER, "c", {REC: ">"})  # crypto never reads what it sealed
    denied(cry.delete, REC)
    denied(cry.execute_command, "FLUSHALL")
    denied(cry.execute_command, "CONFIG", "SET", "appendonly", "no")
    denied(cry.execute_command, "KEYS", "*")
    # the uploader: discover, consume, ack, health, heartbeat
    assert [k.decode() for k in upl.scan_iter(match="sealed:rec:*", count=200, _type="stream")] == [REC]
    got = upl.xreadgroup(names.GROUP_UPLOADER, "u1", {REC: "0"}, count=10)
    got = upl.xreadgroup(names.GROUP_UPLOADER, "u1", {REC: ">"}, count=10)
    ids = [i for _s, e in got for i, _f in e]
    assert len(ids) == 5 and upl.xack(REC, names.GROUP_UPLOADER, *ids) == 5
    upl.xadd(names.SEALED_HEALTH, {"h": "2"}, maxlen=names.MAXLEN_HEALTH, approximate=True)
    upl.set(names.heartbeat_key("uploader", "u1"), "1", ex=names.HEARTBEAT_TTL_S)
    denied(upl.xadd, REC, {"forged": "1"})  # it cannot inject, trim or delete sealed records
    denied(upl.xtrim, REC, maxlen=0)
    denied(upl.delete, REC)
    denied(upl.xdel, REC, ids[0])
    denied(upl.xreadgroup, names.GROUP_WATCHDOG, "u1", {names.SEALED_HEALTH: ">"})
    denied(upl.set, names.heartbeat_key("crypto", "c1"), "forged")
    denied(upl.execute_command, "FLUSHALL")
    denied(upl.execute_command, "KEYS", "*")
    denied(upl.execute_command, "CONFIG", "GET", "*")
    denied(upl.set, "rq-lookalike", "1")
    upl.set("rq:test", "1")  # rq's own keys
    # the watchdog: read-only look at records, its own group on health, heartbeat
    assert wd.time()
    assert [k.decode() for k in wd.scan_iter(match="sealed:rec:*", count=1000, _type="STREAM")] == [REC]
    assert wd.xinfo_stream(REC)["length"] == 5 and wd.xinfo_groups(REC)
    wd.xgroup_create(names.SEALED_HEALTH, names.GROUP_WATCHDOG, id="0", mkstream=True)
    got = wd.xreadgroup(names.GROUP_WATCHDOG, "w1", {names.SEALED_HEALTH: ">"}, count=500, block=10)
    hid = [i for _s, e in got for i, _f in e]
    assert len(hid) == 2 and wd.xack(names.SEALED_HEALTH, names.GROUP_WATCHDOG, *hid) == 2
    wd.set(names.heartbeat_key("watchdog", "w1"), "1", ex=names.HEARTBEAT_TTL_S)
    denied(wd.xadd, REC, {"forged": "1"})
    denied(wd.xreadgroup, names.GROUP_UPLOADER, "w1", {REC: ">"})
    denied(wd.xadd, names.SEALED_HEALTH, {"forged": "1"})
    denied(wd.xrange, REC)  # metadata only, never the ciphertext itself
    denied(wd.set, "rq:x", "1")
    denied(wd.execute_command, "FLUSHALL")


def test_rq_enqueue_and_burst_worker_as_the_uploader(buses: dict[str, EmbeddedBus]) -> None:
    from rq import Queue, Retry, SimpleWorker

    r = user(buses, "sealed", "uploader")
    q = Queue("sealcam-test", connection=r)
    job = q.enqueue("builtins.sum", [1, 2, 3], retry=Retry(max=2, interval=0))
    assert SimpleWorker([q], connection=r).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished" and job.return_value() == 6
    assert all(k.startswith(b"rq:") for k in r.scan_iter(match="rq:*"))
    wd = user(buses, "sealed", "watchdog")
    denied(Queue("sealcam-test", connection=wd).enqueue, "builtins.len", [1])
