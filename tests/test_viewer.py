"""The viewer without a browser: timeline logic (pure), MP4 re-timing, export re-checked by the CLI, live follow
of a segment still being written, and the `sealcam view` command's refusals."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from viewer_archive import T0, build, encode, ffmpeg_available, split, write_segment

from sealcam.cli.main import run as cli
from sealcam.format import problems as P
from sealcam.storage import open_storage
from sealcam.viewer import mp4
from sealcam.viewer import timeline as TL
from sealcam.viewer.archive import Archive
from sealcam.viewer.export import ExportError, export_clip
from sealcam.viewer.stream import Stream

needs_ffmpeg = pytest.mark.skipif(ffmpeg_available() is not None, reason=str(ffmpeg_available()))
S = 1_000_000


# -- pure timeline logic ------------------------------------------------------------------------------------

def test_spans_join_close_chunks_and_split_at_holes() -> None:
    segs = [TL.SegInfo("a", 0, [0, S, 2 * S]), TL.SegInfo("b", 1, [3 * S, 4 * S]),
            TL.SegInfo("c", 2, [30 * S, 31 * S], problems=[P.MODIFIED])]
    assert TL.spans(segs) == [{"from": 0, "until": 5 * S, "ok": True}, {"from": 30 * S, "until": 32 * S, "ok": False}]


def test_suspicious_names_missing_segments_between_neighbours() -> None:
    segs = [TL.SegInfo("a", 0, [0, S]), TL.SegInfo("c", 2, [20 * S, 21 * S])]
    probs = [P.Problem(P.MISSING_SEGMENT, "segment(s) 1..1 missing", file="c", seq=2)]
    assert TL.suspicious(segs, probs) == [{"from": S, "until": 20 * S, "kinds": [P.MISSING_SEGMENT],
                                           "messages": ["missing-segment: segment(s) 1..1 missing"], "seq": 2}]


def test_events_merge_phases_and_tolerate_odd_records() -> None:
    recs = [{"event_id": "e1", "phase": "start", "label": "motion", "score": 300, "start_us": 10, "at_us": 10,
             "_time": 10},
            {"event_id": "e1", "phase": "update", "label": "person", "score": 900, "at_us": 20, "_time": 20},
            {"event_id": "e1", "phase": "end", "label": "person", "score": 900, "end_us": 40, "at_us": 40,
             "_time": 40},
            {"state": "lost", "at_us": 100, "_time": 100},
            {"label": ["not", "text"], "score": "high", "_time": 200}]
    out = TL.events(recs, [{"seq": 3, "index": 7, "time": 25}])
    assert [(e["from"], e["until"], e["label"], e["score"]) for e in out] == [
        (10, 40, "person", 900), (100, 100, "feed lost", 0), (200, 200, "event", 0)]
    assert out[0]["thumb"] == {"seq": 3, "index": 7}


# -- MP4 -------------------------------------------------------------------------------------------------------

@needs_ffmpeg
def test_mp4_codecs_and_shift() -> None:
    init, frags = split(encode(3))
    assert mp4.codecs(init).startswith("avc1.")
    (track, scale), = mp4.timescales(init).items()
    frag = frags[1][1]
    before = mp4.decode_times(frag)[track]
    moved = mp4.shift(frag, {track: 5 * scale})
    assert len(moved) == len(frag) and mp4.decode_times(moved)[track] == before + 5 * scale
    with pytest.raises(mp4.Mp4Error):
        mp4.shift(frag, {track: -before - 1})


# -- export ----------------------------------------------------------------------------------------------------

@needs_ffmpeg
def test_export_is_rechecked_by_sealcam_verify_and_decrypt(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    b = build(tmp_path / "root")
    a = Archive(open_storage(str(b.root)), [b.owner], signer=b.hub.public)
    a.refresh()
    files = export_clip(a, b.handle, T0 + 5 * S, T0 + 25 * S, "porch")
    out = tmp_path / "export"
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    report = json.loads(files["report.json"])
    assert report["chain"]["ok"] and [s["seq"] for s in report["segments"]] == [0, 1, 2]
    assert report["signer"] == b.hub.signer_string and report["camera"]["name"] == "porch"
    assert report["range"] == {"from": "2026-01-10T12:00:05Z", "until": "2026-01-10T12:00:25Z"}
    assert "intact" in files["report.html"].decode() and b.hub.signer_string in files["report.html"].decode()
    assert cli(["verify", "--signer", b.hub.signer_string, str(out / "sealed")]) == 0
    ident = tmp_path / "owner.key"
    ident.write_text(b.owner.dump(None))
    clip2 = tmp_path / "again.mp4"
    assert cli(["decrypt", "--identity", str(ident), "--signer", b.hub.signer_string, "--since",
                report["range"]["from"], "--until", report["range"]["until"], "-q", "-o", str(clip2),
                str(out / "sealed")]) == 0
    assert hashlib.sha256(clip2.read_bytes()).hexdigest() == report["clip"]["sha256"]
    with pytest.raises(ExportError):
        export_clip(a, b.handle, T0 + 40 * S, T0 + 50 * S)  # the declared gap: no footage
    capsys.readouterr()


# -- live follow -------------------------------------------------------------------------------------------------

@needs_ffmpeg
def test_live_follow_serves_checkpointed_records_as_they_arrive(tmp_path: Path) -> None:
    b = build(tmp_path / "root")
    init, frags = split(encode(20))
    start = T0 + 90 * S
    # seq 6 is being written (18 fragments so far, not closed); storage has only the first 40 % of its bytes
    staging = tmp_path / "staging"
    name, _ = write_segment(staging, b.hub, b.owner, b.handle, 6, b.last_digest, start, init, frags[:18], [],
                            close=False)
    data = (staging / name).read_bytes()
    cut = len(data) * 2 // 5
    (b.root / name).write_bytes(data[:cut])
    a = Archive(open_storage(str(b.root)), [b.owner])
    a.refresh()
    cam = a.camera(b.handle)
    assert cam.open_segment == name and not cam.problems  # being written: open, not a problem
    seen: list[int] = []
    stop = threading.Event()
    s = Stream(a, b.handle, start + 2 * S, live=True, poll_s=0, stop=stop,
               sleep=lambda _s: on_poll())

    def on_poll() -> None:  # the uploader appends the rest while the viewer waits
        seen.append(s.fragments)
        if len(seen) == 1:
            with open(b.root / name, "ab") as f:
                f.write(data[cut:])
        elif len(seen) > 2:
            stop.set()

    info, body = s.open()
    got = b"".join(body)
    assert info.start_us == start + 2 * S and got[4:8] == b"ftyp"
    # a signed checkpoint every 5 chained records: all 19 records (init + 18 fragments) -> 15 covered, so
    # fragments 2..13 are served, the first few before the rest had arrived
    assert 0 < seen[0] < 12 and s.fragments == 12


# -- CLI ---------------------------------------------------------------------------------------------------------

def test_view_needs_an_identity(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert cli(["view", "--storage", str(tmp_path)]) == 2
    assert "--identity" in capsys.readouterr().err


def test_view_rejects_a_bad_storage_url(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from sealcam.keys.identity import X25519Identity

    ident = tmp_path / "o.key"
    ident.write_text(X25519Identity.generate().dump(None))
    assert cli(["view", "--storage", "gopher://x/y", "--identity", str(ident)]) == 2
    assert "unknown scheme" in capsys.readouterr().err
