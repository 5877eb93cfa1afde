"""crypto seals motion events and thumbnails, and keeps footage per recording mode: real buses, real fMP4, real
JPEG; the result verified and decrypted with `sealcam decrypt --events/--extract`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from test_crypto_service import (  # noqa: F401 - fixtures
    BASE_US,
    CAM,
    assemble,
    clip,
    group_info,
    keys,
    push,
    start_thread,
    wait_for,
)

from sealcam.bus import names
from sealcam.bus.contract import FeedEvent, MotionEvent, SealedRecord, Thumbnail
from sealcam.format.chain import check_chains
from sealcam.format.constants import GapReason, RecordType
from sealcam.format.verify import verify_segment
from services.crypto.modes import ModeSettings
from services.crypto.service import CameraSpec, CryptoService

S = 1_000_000
EV = "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("jpeg") / "t.jpg"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48",
                    "-frames:v", "1", str(out)], check=True, timeout=60)
    return out.read_bytes()


def service(plain, sealed, hub, owner, data_dir: Path, stop: threading.Event,  # noqa: ANN001
            mode: ModeSettings | None = None, segment_seconds: float = 30) -> CryptoService:
    return CryptoService(cameras=[CameraSpec(CAM, [owner.recipient], mode)], signer=hub,
                         handle_for=hub.camera_handle, plain=plain, sealed=sealed, data_dir=data_dir,
                         segment_seconds=segment_seconds, stop=stop, block_ms=100)


def drained(plain: redis.Redis) -> bool:
    for stream in (names.plain_frag(CAM), names.plain_event(CAM), names.plain_thumb(CAM)):
        g = group_info(plain, stream, names.GROUP_CRYPTO)
        if g is None or g["pending"] or g["lag"]:
            return False
    return True


def motion(phase: str, start: float, at: float, end: float = 0, kind: str = "object", label: str = "person",
           ev: str = EV) -> MotionEvent:
    detail = json.dumps({"labels": {label: 0.9}, "boxes": [[0.1, 0.2, 0.3, 0.4, label, 0.9]]})
    return MotionEvent(CAM, ev, phase, kind, BASE_US + int(at * S), BASE_US + int(start * S),
                       BASE_US + int(end * S) if phase == "end" else 0, label, 900, detail)


def frag_at(plain: redis.Redis, clip, seq: int) -> None:  # noqa: ANN001, F811
    """Fragment `seq` (1-based) captured at (seq-1) s, cycling the clip's fragment bytes."""
    _init, media = clip
    _t, data, key = media[(seq - 1) % len(media)]
    push(plain, seq, BASE_US + (seq - 1) * S, data, key)


def sealcam(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sealcam.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def test_events_and_thumbnail_sealed_and_recovered(plain_redis, sealed_redis, keys, clip, jpeg,  # noqa: ANN001, F811
                                                  tmp_path: Path) -> None:
    hub, owner, key_file = keys
    init, _ = clip
    stop = threading.Event()
    svc = service(plain_redis, sealed_redis, hub, owner, tmp_path / "data", stop)
    th = start_thread(svc)
    push(plain_redis, 0, BASE_US, init, False, "init")
    for seq in range(1, 4):
        frag_at(plain_redis, clip, seq)
    wait_for(lambda: drained(plain_redis), what="fragments sealed")
    plain_redis.xadd(names.plain_event(CAM), motion("start", 1.5, 2).to_fields())
    plain_redis.xadd(names.plain_event(CAM), motion("update", 1.5, 2.5).to_fields())
    plain_redis.xadd(names.plain_thumb(CAM), Thumbnail(CAM, EV, BASE_US + int(2.5 * S), jpeg).to_fields())
    plain_redis.xadd(names.plain_event(CAM), motion("end", 1.5, 3, end=3).to_fields())
    plain_redis.xadd(names.plain_event(CAM), motion("start", 2, 2, kind="tamper", label="covered",
                                                    ev="f" * 32).to_fields())
    wait_for(lambda: drained(plain_redis) and svc.sealers[CAM].counters.thumbnails == 1, what="events sealed")
    counters = svc.sealers[CAM].health_counters()
    assert (counters["events"], counters["tamper_covered"], counters["tamper_covered_active"]) == (4, 1, 1)
    for seq in range(4, 6):
        frag_at(plain_redis, clip, seq)
    wait_for(lambda: drained(plain_redis), what="more fragments")
    stop.set()
    th.join(10)
    assert not th.is_alive()

    handle = hub.camera_handle(CAM).hex()
    recs = [SealedRecord.from_fields(f) for _i, f in sealed_redis.xrange(names.sealed_rec(handle))]
    assert {r.retention for r in recs} == {"continuous"}  # continuous mode: one retention class
    paths = assemble(sealed_redis, handle, tmp_path / "remote")
    assert len(paths) == 1
    rep = verify_segment(paths[0], signer=hub.public)
    assert rep.ok, rep.problems
    chunks = [r for r in rep.records if r.type is RecordType.CHUNK]
    assert len(chunks) == 1 + 5 + 6 + 1  # init, 5 fragments, 5 EVENT + 1 THUMBNAIL, final filler
    assert [c.time_us for c in chunks] == sorted(c.time_us for c in chunks)

    ident = tmp_path / "owner.identity"
    ident.write_text(owner.dump(None))
    events_file, extract = tmp_path / "events.jsonl", tmp_path / "x"
    dec = sealcam("decrypt", "--identity", str(ident), "--signer", str(key_file), "--events", str(events_file),
                  "--extract", str(extract), str(tmp_path / "remote"))
    assert dec.returncode == 0, dec.stderr
    lines = [json.loads(x) for x in events_file.read_text().splitlines()]
    person = [x for x in lines if x["t"] == "motion" and x["event_id"] == EV]
    assert [x["phase"] for x in person] == ["start", "update", "end"]
    assert person[-1]["end_us"] == BASE_US + 3 * S and person[0]["label"] == "person"
    assert person[0]["detail"]["boxes"][0][4] == "person"
    thumb = next(x for x in lines if x["t"] == "thumb")
    assert (thumb["event_id"], thumb["at_us"], thumb["bytes"]) == (EV, BASE_US + int(2.5 * S), len(jpeg))
    assert any(x["kind"] == "tamper" and x["label"] == "covered" for x in lines)
    jpgs = list(extract.glob("*.jpg"))
    assert len(jpgs) == 1 and jpgs[0].stem.endswith(EV) and jpgs[0].read_bytes() == jpeg
    # the names on storage and the clear parts of the records name neither camera nor label
    blob = paths[0].read_bytes()
    assert b"person" not in blob and CAM.encode() not in blob and b"covered" not in blob


def test_events_mode_keeps_only_event_windows(plain_redis, sealed_redis, keys, clip, jpeg,  # noqa: ANN001, F811
                                              tmp_path: Path) -> None:
    hub, owner, key_file = keys
    init, _ = clip
    stop = threading.Event()
    mode = ModeSettings("events", pre_roll_us=2 * S, post_roll_us=2 * S, max_event_us=60 * S)
    svc = service(plain_redis, sealed_redis, hub, owner, tmp_path / "data", stop, mode=mode)
    th = start_thread(svc)

    def frags(first: int, last: int) -> None:
        for seq in range(first, last + 1):
            frag_at(plain_redis, clip, seq)
        wait_for(lambda: drained(plain_redis), what=f"fragments {first}..{last}")

    def event(msg: MotionEvent | Thumbnail) -> None:
        stream = names.plain_thumb(CAM) if isinstance(msg, Thumbnail) else names.plain_event(CAM)
        plain_redis.xadd(stream, msg.to_fields())
        wait_for(lambda: drained(plain_redis), what="event")

    push(plain_redis, 0, BASE_US, init, False, "init")
    frags(1, 10)  # 0..9 s: nothing happens, nothing sealed
    assert not list(sealed_redis.xrange(names.sealed_rec(hub.camera_handle(CAM).hex())))
    event(motion("start", 8, 9))  # window from 6 s (pre-roll 2 s)
    frags(11, 12)  # 10, 11 s
    event(motion("end", 8, 11, end=11))  # kept until 13 s (post-roll 2 s)
    event(Thumbnail(CAM, EV, BASE_US + 9 * S, jpeg))
    frags(13, 25)  # up to 24 s: the window closes at 14 s
    ev2 = "e" * 32
    event(motion("start", 22, 22, kind="tamper", label="moved", ev=ev2))  # from 20 s
    event(motion("end", 22, 22, end=22, kind="tamper", label="moved", ev=ev2))  # until 24 s
    frags(26, 30)
    stop.set()
    th.join(10)
    assert not th.is_alive()
    assert svc.sealers[CAM].ring.__len__() > 0  # the RAM ring holds what was not kept

    handle = hub.camera_handle(CAM).hex()
    recs = [SealedRecord.from_fields(f) for _i, f in sealed_redis.xrange(names.sealed_rec(handle))]
    assert {r.retention for r in recs} == {"event"}
    paths = assemble(sealed_redis, handle, tmp_path / "remote")
    reports = [verify_segment(p, signer=hub.public) for p in paths]
    assert all(r.ok for r in reports), [r.problems for r in reports]
    chains = check_chains(reports)
    assert chains.ok, chains.problems
    video_times = sorted((c.time_us - BASE_US) // S for r in reports for c in r.records[1:]
                         if c.type is RecordType.CHUNK and c.flags & 2)
    assert video_times == [6, 7, 8, 9, 10, 11, 12, 13, 20, 21, 22, 23, 24]
    gaps = [g.gap for g in chains.gaps]
    assert [g.reason for g in gaps] == [GapReason.NOT_RECORDING]
    assert ((gaps[0].from_us - BASE_US) // S, (gaps[0].until_us - BASE_US) // S) == (13, 20)
    # the verifier lists it as an honest gap, not a problem
    ver = sealcam("verify", "--signer", str(key_file), str(tmp_path / "remote"))
    assert ver.returncode == 0 and "gap: not-recording" in ver.stdout, ver.stdout + ver.stderr
    ident = tmp_path / "owner.identity"
    ident.write_text(owner.dump(None))
    dec = sealcam("decrypt", "--identity", str(ident), "--signer", str(key_file), "--events", "-",
                  "-o", str(tmp_path / "out.mp4"), str(tmp_path / "remote"))
    assert dec.returncode == 0, dec.stderr
    got = [json.loads(x) for x in dec.stdout.splitlines()]
    assert [(x["t"], x.get("phase")) for x in got] == [("motion", "start"), ("motion", "end"), ("thumb", None),
                                                       ("motion", "start"), ("motion", "end")]


def test_feed_loss_and_tamper_reach_sealed_health(plain_redis, sealed_redis, keys, clip,  # noqa: ANN001, F811
                                                  tmp_path: Path) -> None:
    hub, owner, _ = keys
    stop = threading.Event()
    svc = service(plain_redis, sealed_redis, hub, owner, tmp_path / "data", stop)
    th = start_thread(svc)
    plain_redis.xadd(names.plain_event(CAM), FeedEvent(CAM, "lost", BASE_US, "timeout").to_fields())
    plain_redis.xadd(names.plain_event(CAM), motion("start", 0, 0, kind="tamper", label="blinded").to_fields())
    wait_for(lambda: drained(plain_redis), what="events")

    def crypto_health() -> dict | None:
        for _id, f in reversed(sealed_redis.xrange(names.SEALED_HEALTH)):
            if f.get(b"service") == b"crypto" and f.get(b"camera") == CAM.encode():
                return {k.decode(): v.decode() for k, v in f.items()}
        return None
    svc._last_health = 0.0  # health now rather than in 5 s
    wait_for(lambda: (h := crypto_health()) is not None and h["c.feed_lost"] == "1", what="health")
    h = crypto_health()
    assert (h["c.tamper_blinded"], h["c.tamper_blinded_active"], h["c.recording"]) == ("1", "1", "1")
    stop.set()
    th.join(10)
    assert not th.is_alive()
