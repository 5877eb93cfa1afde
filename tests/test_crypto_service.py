"""services.crypto: rotation (pure), and the service on real buses: seal, verify, decrypt, crash, ACK order."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from sealcam.bus import names
from sealcam.bus.contract import FeedEvent, SealedRecord, VideoFragment
from sealcam.format.chain import check_chains
from sealcam.format.constants import GapReason
from sealcam.format.decrypt import decrypt_segment
from sealcam.format.verify import verify_segment
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import X25519Identity
from sealcam.media.fmp4 import iter_fragments
from services.crypto.rotation import Rotator
from services.crypto.sealer import CameraSealer
from services.crypto.service import CameraSpec, CryptoService
from services.crypto.state import StateStore

ROOT = Path(__file__).resolve().parents[1]
CAM = "cam1"
BASE_US = 1_790_000_000_000_000
S = 1_000_000


# -- rotation (pure) ------------------------------------------------------------------------------------

def test_rotation_on_keyframe_after_segment_length() -> None:
    now = [0]
    r = Rotator(3, clock=lambda: now[0])
    assert not r.fragment(0, 0, False, "init").close_before
    decisions = [r.fragment(i, (i - 1) * S, True, "media").close_before for i in range(1, 9)]
    assert decisions == [False, False, False, True, False, False, True, False]  # at t=3 s and t=6 s
    r2 = Rotator(3, clock=lambda: now[0])
    r2.fragment(1, 0, True, "media")
    assert not r2.fragment(2, 4 * S, False, "media").close_before  # no keyframe: wait
    assert r2.fragment(3, 5 * S, True, "media").close_before


def test_rotation_seq_jump_gap_cap_and_feed_loss() -> None:
    now = [0]
    r = Rotator(3, max_seconds=10, clock=lambda: now[0])
    r.fragment(1, 0, True, "media")
    plan = r.fragment(5, 4 * S, False, "media")  # 2..4 trimmed upstream
    assert plan.close_before and plan.gap.reason is GapReason.STORAGE
    assert (plan.gap.from_us, plan.gap.until_us, plan.gap.lost_count) == (0, 4 * S, 0)
    assert "2..4" in plan.gap.detail
    assert r.fragment(6, 15 * S, False, "media").close_before  # capture span over the cap, no keyframe
    assert r.fragment(7, 14 * S, False, "media").close_before  # capture time went back
    assert r.fragment(8, 15 * S, False, "init").close_before  # a new init (recorder restarted)
    r.fragment(9, 16 * S, True, "media")
    assert not r.tick()
    now[0] = 11 * S
    assert r.tick()  # open too long in wall clock (feed stalled)
    r.closed()
    assert r.feed_back(1) is None
    r.feed_lost(20 * S)
    r.feed_lost(21 * S)
    g = r.feed_back(25 * S, "timeout")
    assert (g.reason, g.from_us, g.until_us) == (GapReason.FEED_LOST, 20 * S, 25 * S)


def test_crypto_imports_no_network_or_storage_client() -> None:
    code = ("import sys, services.crypto, services.crypto.rotation, services.crypto.state, services.crypto.sealer, "
            "services.crypto.service, services.crypto.__main__\n"
            "bad = [m for m in ('boto3', 'botocore', 'paramiko', 'ftplib', 'flask', 'requests', 'httpx', 'urllib3')"
            " if m in sys.modules]\nprint(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- helpers --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[tuple[int, bytes, bool]]]:
    """Real fMP4: 12 s, 1 s fragments starting on key frames. (init, [(capture_us, data, keyframe)])."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg not found: run `bash scripts/setup.sh --test`")
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=160x120:rate=10", "-t", "12", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "10", "-sc_threshold", "0",
                    "-pix_fmt", "yuv420p", "-movflags", "frag_keyframe+empty_moov+default_base_moof+skip_trailer",
                    "-f", "mp4", str(path)], check=True, timeout=60)
    with open(path, "rb") as f:
        frags = list(iter_fragments(f))
    init = frags[0].data
    media = [(BASE_US + frag.decode_time * S // frag.timescale, frag.data, frag.keyframe) for frag in frags[1:]]
    assert len(media) == 12
    return init, media


@pytest.fixture
def keys(tmp_path: Path) -> tuple[HubKey, X25519Identity, Path]:
    hub, owner = HubKey.generate(), X25519Identity.generate()
    key_file = tmp_path / "hub.key"
    key_file.write_text(hub.dump(None))
    return hub, owner, key_file


def push(plain: redis.Redis, seq: int, capture_us: int, data: bytes, key: bool, kind: str = "media") -> None:
    plain.xadd(names.plain_frag(CAM), VideoFragment(CAM, seq, capture_us, key, kind, data).to_fields(),
               maxlen=names.MAXLEN_FRAG, approximate=True)


def group_info(r: redis.Redis, stream: str, group: str) -> dict | None:
    return next((g for g in r.xinfo_groups(stream) if g["name"].decode() == group), None)


def wait_for(cond, timeout: float = 20.0, what: str = "condition") -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def plain_drained(plain: redis.Redis) -> bool:
    g = group_info(plain, names.plain_frag(CAM), names.GROUP_CRYPTO)
    return g is not None and g["pending"] == 0 and g["lag"] == 0


def assemble(sealed: redis.Redis, handle: str, folder: Path) -> list[Path]:
    """Rebuild the remote as the uploader would: append each record at its offset; no duplicates allowed."""
    objects: dict[str, bytearray] = {}
    seen: set[tuple[str, int]] = set()
    finals: set[str] = set()
    for _id, fields in sealed.xrange(names.sealed_rec(handle)):
        rec = SealedRecord.from_fields(fields)
        key = (rec.object_name, rec.offset)
        assert key not in seen, f"duplicate record {key}"
        assert rec.object_name not in finals, "record after the final one"
        seen.add(key)
        buf = objects.setdefault(rec.object_name, bytearray())
        assert rec.offset == len(buf), "records of one object must be contiguous and in order"
        buf += rec.data
        if rec.final:
            finals.add(rec.object_name)
    paths = []
    for name, data in sorted(objects.items()):
        assert name.startswith(handle + "/") and CAM not in name
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        paths.append(p)
    return paths


def decrypted_seconds(paths: list[Path], owner: X25519Identity, hub: HubKey, out: Path) -> float:
    total = 0.0
    for i, p in enumerate(paths):
        mp4 = out / f"{i}.mp4"
        with open(mp4, "wb") as f:
            decrypt_segment(p, [owner], f.write, signer=hub.public)
        # each segment's fMP4 keeps its original decode times, so ffprobe's container duration counts from 0;
        # the played duration is the packet count at the clip's 10 fps
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0",
                                "-show_entries", "stream=nb_read_packets", "-of", "json", str(mp4)],
                               capture_output=True, text=True, check=True)
        total += int(json.loads(probe.stdout)["streams"][0]["nb_read_packets"]) / 10
    return total


def start_thread(svc: CryptoService) -> threading.Thread:
    t = threading.Thread(target=svc.run, daemon=True)
    t.start()
    return t


def make_service(plain, sealed, hub, owner, data_dir: Path, stop: threading.Event) -> CryptoService:  # noqa: ANN001
    return CryptoService(cameras=[CameraSpec(CAM, [owner.recipient])], signer=hub, handle_for=hub.camera_handle,
                         plain=plain, sealed=sealed, data_dir=data_dir, segment_seconds=3, stop=stop, block_ms=200)


# -- the service on real buses --------------------------------------------------------------------------

def test_seal_verify_decrypt(plain_redis, sealed_redis, keys, clip, tmp_path: Path) -> None:  # noqa: ANN001
    hub, owner, _ = keys
    init, media = clip
    media = media[:8]
    push(plain_redis, 0, media[0][0], init, False, "init")
    for i, (t, data, key) in enumerate(media, 1):
        push(plain_redis, i, t, data, key)
    # a feed loss and return while sealing, and forwarded plain-side health
    plain_redis.xadd(names.plain_event(CAM), FeedEvent(CAM, "lost", media[4][0], "timeout").to_fields())
    plain_redis.xadd(names.plain_event(CAM), FeedEvent(CAM, "back", media[4][0] + 1000).to_fields())
    plain_redis.xadd(names.PLAIN_HEALTH, {b"v": b"1", b"t": b"health", b"service": b"recorder", b"at_us": b"5",
                                          b"lag_ms": b"7", b"camera": CAM.encode(), b"c.fragments": b"9"})
    stop = threading.Event()
    svc = make_service(plain_redis, sealed_redis, hub, owner, tmp_path / "data", stop)
    th = start_thread(svc)
    wait_for(lambda: svc.sealers[CAM].counters.fragments == 8 and plain_drained(plain_redis), what="sealing")
    stop.set()
    th.join(10)
    assert not th.is_alive()
    handle = hub.camera_handle(CAM).hex()
    paths = assemble(sealed_redis, handle, tmp_path / "remote")
    assert len(paths) == 3  # 0-3 s, 3-6 s, 6-8 s (the last closed on the clean stop)
    reports = [verify_segment(p, signer=hub.public) for p in paths]
    for r in reports:
        assert r.ok, r.problems
    rep = check_chains(reports)
    assert rep.ok, rep.problems
    assert [g.gap.reason for g in rep.gaps] == [GapReason.FEED_LOST]
    assert decrypted_seconds(paths, owner, hub, tmp_path) == pytest.approx(8.0, abs=0.3)
    # live: segment 1 without its final record verifies up to its checkpoint (init, 3 s, 4 s, gap, 5 s)
    recs = [SealedRecord.from_fields(f) for _i, f in sealed_redis.xrange(names.sealed_rec(handle))]
    live = tmp_path / "live.seal"
    live.write_bytes(b"".join(r.data for r in recs if r.seg_seq == 1 and not r.final))
    assert verify_segment(live, signer=hub.public).verified_count == 5
    state = json.loads((tmp_path / "data" / "crypto" / f"state-{handle}.json").read_text())
    assert state["open_seq"] is None and state["next_seq"] == 3
    assert state["prev_link"] == reports[-1].digest.hex()
    health = [dict(f) for _i, f in sealed_redis.xrange(names.SEALED_HEALTH)]
    assert any(h[b"service"] == b"recorder" and h[b"c.fragments"] == b"9" for h in health)
    assert any(h[b"service"] == b"crypto" for h in health)
    assert sealed_redis.get(names.heartbeat_key("crypto", "crypto-1"))


def test_restart_after_the_init_was_trimmed_uses_the_kept_init(plain_redis, sealed_redis, keys, clip,  # noqa: ANN001
                                                                tmp_path: Path) -> None:
    """A crypto that (re)starts after the stream lost its init entry seals from the recorder's kept copy instead of
    dropping every fragment until the camera reconnects."""
    hub, owner, _ = keys
    init, media = clip
    stream = names.plain_frag(CAM)
    push(plain_redis, 0, media[0][0], init, False, "init")
    plain_redis.hset(names.plain_init(stream), mapping=VideoFragment(CAM, 0, media[0][0], False, "init",
                                                                      init).to_fields())
    plain_redis.xtrim(stream, maxlen=0, approximate=False)  # the init entry is gone, as after minutes of running
    for i, (t, data, key) in enumerate(media[:6], 1):
        push(plain_redis, i, t, data, key)
    stop = threading.Event()
    svc = make_service(plain_redis, sealed_redis, hub, owner, tmp_path / "data", stop)
    th = start_thread(svc)
    wait_for(lambda: plain_drained(plain_redis), what="draining")
    stop.set()
    th.join(10)
    sealer = svc.sealers[CAM]
    assert sealer.counters.fragments == 6 and sealer.counters.dropped == 0
    paths = assemble(sealed_redis, hub.camera_handle(CAM).hex(), tmp_path / "remote")
    reports = [verify_segment(p, signer=hub.public) for p in paths]
    assert reports and all(r.ok for r in reports) and check_chains(reports).ok
    assert decrypted_seconds(paths, owner, hub, tmp_path) == pytest.approx(6.0, abs=0.3)


def test_crash_between_open_and_previous_final_declares_both(keys, clip, tmp_path: Path) -> None:  # noqa: ANN001
    """The next segment's state is saved before the previous final record is on the bus: a crash right then
    leaves two unfinished segments, and the restart declares both (and links to the last confirmed one)."""
    hub, owner, _ = keys
    init, media = clip
    store = StateStore(tmp_path, hub.camera_handle(CAM).hex())
    s = CameraSealer(CAM, hub.camera_handle(CAM), hub, [owner.recipient], store, segment_seconds=3)
    outs = s.fragment(VideoFragment(CAM, 0, media[0][0], False, "init", init))
    for i in range(3):
        for o in s.fragment(VideoFragment(CAM, i + 1, *media[i][:1], media[i][2], "media", media[i][1])):
            if o.done:
                o.done()
    outs = s.fragment(VideoFragment(CAM, 4, media[3][0], media[3][2], "media", media[3][1]))
    assert [o.record.final for o in outs] == [True, False]  # final of 0, then the first record of 1
    assert store.load().open_seq == 1 and store.load().lost_first == 0  # nothing of `outs` published: crash
    s2 = CameraSealer(CAM, hub.camera_handle(CAM), hub, [owner.recipient], store, segment_seconds=3)
    gap = s2._pending_gaps[0]
    assert (gap.reason, gap.lost_first_seq, gap.lost_count) == (GapReason.RESTART, 0, 2)
    assert s2.state.next_seq == 2 and s2._link == bytes(32)


class FlakySealed:
    """The real sealed bus, except that XADD of sealed records fails while `down` is set."""

    def __init__(self, real: redis.Redis) -> None:
        self.real, self.down = real, True

    def xadd(self, name, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN201
        if self.down and str(name).startswith("sealed:rec:"):
            raise redis.ConnectionError("sealed bus unreachable (test)")
        return self.real.xadd(name, *a, **kw)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.real, name)


def test_plain_ack_only_after_sealed_write(plain_redis, sealed_redis, keys, clip, tmp_path: Path) -> None:  # noqa: ANN001
    hub, owner, _ = keys
    init, media = clip
    push(plain_redis, 0, media[0][0], init, False, "init")
    push(plain_redis, 1, *media[0])
    flaky = FlakySealed(sealed_redis)
    stop = threading.Event()
    svc = make_service(plain_redis, flaky, hub, owner, tmp_path / "data", stop)
    th = start_thread(svc)
    frag = names.plain_frag(CAM)
    wait_for(lambda: group_info(plain_redis, frag, names.GROUP_CRYPTO)["pending"] == 1, what="delivery")
    time.sleep(0.5)  # it keeps retrying the sealed write and does not ACK meanwhile
    assert group_info(plain_redis, frag, names.GROUP_CRYPTO)["pending"] == 1
    assert sealed_redis.xlen(names.sealed_rec(hub.camera_handle(CAM).hex())) == 0
    flaky.down = False
    wait_for(lambda: plain_drained(plain_redis), what="ACK after the sealed write")
    assert sealed_redis.xlen(names.sealed_rec(hub.camera_handle(CAM).hex())) == 1
    stop.set()
    th.join(10)


def test_backpressure_pauses_instead_of_trimming_unread(plain_redis, sealed_redis, keys, clip, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    hub, owner, _ = keys
    init, media = clip
    monkeypatch.setattr(names, "MAXLEN_SEALED_REC", 3)
    push(plain_redis, 0, media[0][0], init, False, "init")
    for i in range(8):
        push(plain_redis, i + 1, *media[i])
    stop = threading.Event()
    svc = make_service(plain_redis, sealed_redis, hub, owner, tmp_path / "data", stop)
    th = start_thread(svc)
    rec = names.sealed_rec(hub.camera_handle(CAM).hex())
    wait_for(lambda: svc._paused, what="backpressure")
    time.sleep(0.5)
    n = sealed_redis.xlen(rec)
    assert 3 < n < 8  # over the bound by what was already sealed, nothing trimmed, reading paused
    assert group_info(plain_redis, names.plain_frag(CAM), names.GROUP_CRYPTO)["pending"] > 0  # not ACKed
    first = sealed_redis.xrange(rec, count=1)[0][0]
    def upload() -> bool:  # the uploader reads and acknowledges: crypto trims and resumes
        for _s, entries in sealed_redis.xreadgroup(names.GROUP_UPLOADER, "up", {rec: ">"}) or []:
            sealed_redis.xack(rec, names.GROUP_UPLOADER, *[i for i, _f in entries])
        return plain_drained(plain_redis) and not svc._paused
    wait_for(upload, what="resume")
    assert sealed_redis.xrange(rec, count=1)[0][0] != first  # acknowledged entries were trimmed
    stop.set()
    th.join(10)


def _config(tmp_path: Path, plain_url: str, sealed_url: str, owner: X25519Identity, key_file: Path) -> Path:
    cfg = tmp_path / "sealcam.yaml"
    cfg.write_text(f"""
data_dir: {tmp_path / 'data'}
cameras:
  - id: {CAM}
    inputs: [{{url: "synthetic://demo", roles: [record]}}]
recipients: ["{owner.recipient.label}"]
storage: [{{type: local, path: {tmp_path / 'remote-cfg'}}}]
buses: {{plain_url: "{plain_url}", sealed_url: "{sealed_url}"}}
hub: {{signing_key_file: {key_file}}}
""")
    return cfg


def _spawn(cfg: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.crypto", "--config", str(cfg), "--segment-seconds", "3"],
                            cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115


def test_kill_and_restart_leaves_an_honest_gap(plain_bus, sealed_bus, plain_redis, sealed_redis, keys, clip,
                                                tmp_path: Path) -> None:  # noqa: ANN001
    hub, owner, key_file = keys
    init, media = clip
    cfg = _config(tmp_path, plain_bus.url, sealed_bus.url, owner, key_file)
    log = tmp_path / "crypto.log"
    handle = hub.camera_handle(CAM).hex()
    rec_stream = names.sealed_rec(handle)
    proc = _spawn(cfg, log)
    try:
        push(plain_redis, 0, media[0][0], init, False, "init")
        for i in range(5):  # segment 0: 0..2 s, closed at 3 s; segment 1 open with 3 s, 4 s
            push(plain_redis, i + 1, *media[i])
        wait_for(lambda: plain_redis.exists(names.plain_frag(CAM)) and plain_drained(plain_redis), what="first run")
        n_before = sealed_redis.xlen(rec_stream)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        state = json.loads((tmp_path / "data" / "crypto" / f"state-{handle}.json").read_text())
        assert state["open_seq"] == 1 and state["next_seq"] == 2
        for i in range(5, 12):
            push(plain_redis, i + 1, *media[i])
        proc = _spawn(cfg, log)
        wait_for(lambda: plain_drained(plain_redis) and sealed_redis.xlen(rec_stream) >= n_before + 7,
                 what="second run")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    paths = assemble(sealed_redis, handle, tmp_path / "remote")
    assert len(paths) == 4  # 0 closed, 1 unfinished, 2 (5..7 s) and 3 (8..11 s) closed
    reports = [verify_segment(p, signer=hub.public) for p in paths]
    assert not reports[1].ok  # unfinished: no trailer (3 chained records, below the first checkpoint)
    rep = check_chains(reports)
    assert rep.ok, rep.problems
    restart = [g.gap for g in rep.gaps if g.gap.reason is GapReason.RESTART]
    assert [(g.lost_first_seq, g.lost_count) for g in restart] == [(1, 1)]
    assert reports[2].header.prev_link == reports[0].digest
    closed = [p for p, r in zip(paths, reports, strict=True) if r.ok]
    assert decrypted_seconds(closed, owner, hub, tmp_path) == pytest.approx(10.0, abs=0.3)  # all but 3 s, 4 s
    assert "Traceback" not in log.read_text()
    assert os.path.exists(tmp_path / "data" / "crypto")
