"""End to end, recording mode `events` with `kill -9` of crypto while an event is being recorded: an RTSP camera
emulator (a ball that never stops moving) -> `sealcam up` (recorder, motion, crypto, uploader, watchdog) -> a
local folder as the remote. crypto is killed a few seconds into the event; the supervisor restarts it.

Afterwards: the remote verifies as one chain with a signed RESTART gap, the segment cut short by the crash still
decrypts, no fragment is sealed twice, recording goes on after the restart (the event is still going), and no
plaintext fMP4 fragment (a pre-roll held in crypto's RAM, or any other) exists anywhere under data_dir.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from rtsp_server import available, rtsp_camera
from servers import wait_until
from upctl import run_cli, running_up, service_logs, service_pid

from sealcam.bus.contract import MotionEvent, VideoFragment
from sealcam.format.chain import check_chains
from sealcam.format.constants import GapReason
from sealcam.format.verify import verify_segment
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import X25519Identity
from sealcam.media.fmp4 import iter_fragments
from services.crypto.modes import ModeSettings
from services.crypto.sealer import CameraSealer
from services.crypto.state import StateStore

FPS = 10  # the emulator's frame rate
#: A media fragment in the clear: a moof box whose first child is its mfhd (what ffmpeg and every fMP4 muxer
#: write). 12 bytes with 4 fixed at each end: random ciphertext holds it with odds of ~2^-64 per position.
PLAIN_FRAGMENT = re.compile(rb"moof.{4}mfhd", re.DOTALL)


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


def _media(path: Path) -> list:
    with path.open("rb") as f:
        return [fr for fr in iter_fragments(io.BytesIO(f.read())) if fr.kind == "media"]


def test_restart_mid_event_declares_no_not_recording_for_the_lost_segment(tmp_path: Path) -> None:
    """The sealer alone (no servers): events mode, a crash in the event's second segment, a restart that learns of
    the event again. The chain declares the lost segment with a RESTART gap only: the time the camera was
    recording (then lost) is never signed as NOT_RECORDING (regression: the restart used to declare everything
    since the last saved capture time as nothing kept on purpose)."""
    s_us, base = 1_000_000, 1_700_000_000_000_000
    now = [base]
    hub, owner = HubKey.generate(), X25519Identity.generate()
    handle = hub.camera_handle("porch")
    store = StateStore(tmp_path / "state", handle.hex())
    mode = ModeSettings("events", pre_roll_us=2 * s_us, post_roll_us=2 * s_us, max_event_us=300 * s_us)
    files: dict[int, bytearray] = {}

    def sealer() -> CameraSealer:
        return CameraSealer("porch", handle, hub, [owner.recipient], store, segment_seconds=10,
                            clock=lambda: now[0], mode=mode)

    def publish(outs: list) -> None:  # noqa: ANN001
        for o in outs:
            files.setdefault(o.record.seg_seq, bytearray()).extend(o.record.data)
            if o.done is not None:
                o.done()

    def frag(s: CameraSealer, i: int) -> None:
        now[0] = base + i * s_us
        publish(s.fragment(VideoFragment("porch", i + 1, base + i * s_us, True, "media", b"frag%d" % i)))

    def event(s: CameraSealer, phase: str, at: int, end: int = 0) -> None:
        publish(s.event(MotionEvent("porch", "a" * 32, phase, "motion", base + at * s_us, base + 3 * s_us,
                                    base + end * s_us if end else 0, "motion", 50, "{}")))

    first = sealer()
    publish(first.fragment(VideoFragment("porch", 0, base, False, "init", b"init")))
    for i in range(5):
        frag(first, i)  # held in RAM
    event(first, "start", 4)  # the window opens at 1 s
    for i in range(5, 16):
        frag(first, i)  # segment 0 closes at ~11 s, segment 1 holds 11..15 s
    assert store.load().open_seq == 1  # kill -9 here: segment 1 unfinished
    now[0] = base + 17 * s_us
    second = sealer()  # restarted
    publish(second.fragment(VideoFragment("porch", 0, base + 16 * s_us, False, "init", b"init")))
    for i in range(16, 19):
        frag(second, i)  # held: the new crypto does not know of the event yet
    event(second, "update", 18)  # it does now: the ring is sealed
    event(second, "end", 19, end=19)
    for i in range(19, 24):
        frag(second, i)
    publish(second.close())
    for seq, data in files.items():
        (tmp_path / f"{seq}.seal").write_bytes(data)
    reports = [verify_segment(tmp_path / f"{seq}.seal", signer=hub.public) for seq in sorted(files)]
    chains = check_chains(reports)
    assert chains.ok, chains.problems
    gaps = [(g.gap.reason, (g.gap.from_us - base) // s_us, (g.gap.until_us - base) // s_us, g.gap.lost_first_seq)
            for g in chains.gaps]
    assert gaps and gaps[0][0] is GapReason.RESTART and gaps[0][3] == 1, gaps
    assert not [g for g in gaps if g[0] is GapReason.NOT_RECORDING and g[1] < 17], gaps


def test_kill_9_crypto_mid_event_in_events_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if why := available():
        pytest.skip(why)
    monkeypatch.setenv("SEALCAM_WATCHDOG_PORT", "0")  # never collide with another `sealcam up`
    first = tmp_path / "first"
    run = run_cli("up", "--data-dir", str(first), "--for", "1s")  # keys and a default config
    assert run.returncode == 0, run.stdout + run.stderr
    keys = first / "keys"
    data = tmp_path / "data"
    cfg = yaml.safe_load((first / "config.yml").read_text())
    cfg["data_dir"] = str(data)
    cfg["storage"][0]["path"] = str(data / "remote")
    cfg["recording"] = {"segment_seconds": 10, "mode": "events", "pre_roll_seconds": 2, "post_roll_seconds": 2}
    cfg["motion"] = {"end_seconds": 1.5, "min_seconds": 0.2, "tamper": {"enabled": False}}  # black background
    remote = data / "remote"
    t0 = time.monotonic()
    with rtsp_camera() as cam:  # the bouncing ball: one event from the first frames to the stop
        cfg["cameras"][0]["id"] = "porch"
        cfg["cameras"][0]["inputs"] = [{"url": cam.url, "roles": ["record"]}]
        cfg_path = tmp_path / "events.yml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        with running_up(cfg_path, data, 34) as up:
            crypto_log = data / "logs" / "crypto.log"
            assert wait_until(lambda: crypto_log.exists() and "sealing the pre-roll" in crypto_log.read_text(
                errors="replace"), 30), "no event started\n" + service_logs(data)
            # the event's first segment is closed (so the chain state has footage behind it), then crypto dies a
            # few seconds into the second
            opened = wait_until(lambda: "opened segment 1" in crypto_log.read_text(errors="replace"), 20)
            assert opened, service_logs(data)
            time.sleep(3)
            crypto = service_pid(data, "services.crypto")
            assert crypto is not None, service_logs(data)
            os.kill(crypto, signal.SIGKILL)
            killed_at = time.time()
            assert wait_until(lambda: service_pid(data, "services.crypto") not in (None, crypto), 15), \
                "the supervisor did not restart crypto\n" + service_logs(data)
            assert time.monotonic() - t0 < 26, "the kill must land well before `up` stops"
            out = up.communicate(timeout=90)[0]
            assert up.returncode == 0, out[-3000:] + service_logs(data)
    print(f"events crash e2e: {time.monotonic() - t0:.1f} s")
    assert "starting crypto (restart 1)" in crypto_log.read_text(errors="replace")

    # one verified chain: every seq once, the segment cut short declared by a signed RESTART gap
    ver = run_cli("verify", "--json", "--signer", str(keys / "hub.key"), str(remote))
    rep = json.loads(ver.stdout)
    assert ver.returncode == 0 and rep["ok"], ver.stdout[-4000:] + ver.stderr
    seqs = sorted(f["seq"] for f in rep["files"])
    assert seqs == list(range(len(seqs))), seqs  # no duplicate object, none missing
    restarts = [g for g in rep["gaps"] if g["reason"] == "restart"]
    assert len(restarts) == 1, rep["gaps"]
    lost = restarts[0]["lost_first_seq"]
    assert restarts[0]["lost_count"] == 1 and lost in seqs and lost >= 1, restarts

    # the footage sealed before the crash decrypts, from the unfinished segment alone. The owner's plain decrypt
    # of the remote gives its checkpoint-signed prefix (declared by the signed RESTART gap); forced, all it holds; the
    # only problems let through are its missing end and the tail after its last signed checkpoint.
    cut = next(Path(f["path"]) for f in rep["files"] if f["seq"] == lost)
    dec = run_cli("decrypt", "--force", "--identity", str(keys / "owner.identity"), "--signer", str(keys / "hub.key"),
               "-o", str(tmp_path / "cut.mp4"), str(cut))
    assert dec.returncode in (0, 1), dec.stderr[-2000:]
    problems = [line for line in dec.stderr.splitlines() if line.startswith("let through:")]
    assert all(p.startswith(("let through: missing-final:", "let through: unverified:")) for p in problems), problems
    before = _media(tmp_path / "cut.mp4")
    assert len(before) >= 2, f"{len(before)} fragments sealed before the crash"

    # everything, unforced: the cut segment gives only its checkpoint-signed prefix (declared by the RESTART gap);
    # no fragment twice (neither inside the chain nor between it and the cut segment's unsigned tail)
    dec = run_cli("decrypt", "--identity", str(keys / "owner.identity"), "--signer", str(keys / "hub.key"),
               "-o", str(tmp_path / "all.mp4"), str(remote))
    assert dec.returncode == 0, dec.stderr[-2000:]
    note = f"{cut} (segment {lost}): unfinished segment, declared by the signed restart gap"
    assert f"recovered {note}" in dec.stderr or f"skipped {note}" in dec.stderr, dec.stderr[-2000:]  # no checkpoint yet
    frags = _media(tmp_path / "all.mp4")
    times = [f.decode_time for f in frags]
    assert times == sorted(set(times)), "a fragment sealed twice (or out of order)"
    before_times = [f.decode_time for f in before]
    recovered = [t for t in times if t in set(before_times)]
    assert recovered == before_times[: len(recovered)], "only a prefix of the cut segment, in order"
    everything = before_times + [t for t in times if t not in set(recovered)]
    assert len(set(everything)) == len(everything), "a fragment of the cut segment sealed again after the restart"

    # recording went on after the restart: the event never ended, so the footage after the kill is sealed (not
    # declared "not recording")
    last_before = max(f.decode_time for f in before)
    after = [f for f in frags if f.decode_time > last_before]
    assert len(after) >= 12, f"only {len(after)} fragments sealed after the restart\n" + service_logs(data)
    assert not [g for g in rep["gaps"] if g["reason"] == "not-recording" and _us(g["until"]) > killed_at * 1e6], \
        rep["gaps"]

    # no plaintext fragment anywhere under data_dir (spool and remote hold ciphertext; the plain bus nothing)
    assert PLAIN_FRAGMENT.search((tmp_path / "all.mp4").read_bytes())  # the pattern finds fragments in the clear
    files = [p for p in data.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".seal" for p in files) and any(p.parent.name == "crypto" for p in files)
    found = [str(p.relative_to(data)) for p in files if PLAIN_FRAGMENT.search(p.read_bytes())]
    assert not found, f"plaintext fMP4 fragments on disk: {found}"
