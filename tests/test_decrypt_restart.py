"""`sealcam decrypt` after a crash: the checkpoint-signed prefix of a segment that a signed RESTART gap of a later
segment declares unfinished is decrypted without --force; its unsigned tail is not; nothing else changes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from test_cli import sealcam

from sealcam.format.chain import check_chains, restart_prefix
from sealcam.format.constants import GapReason
from sealcam.format.decrypt import VerificationFailed, iter_plain, select, unwrap_key
from sealcam.format.verify import verify_segment
from sealcam.format.writer import SegmentWriter
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import X25519Identity

T0 = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z
SIGNED = [b"a0", b"a1", b"a2", b"a3"]  # chunks of segment 1 covered by its last checkpoint
TAIL = [b"t4", b"t5"]  # written after it, then the hub died


@dataclass
class Rec:
    dir: Path
    hub: HubKey
    ident: X25519Identity


def make_chain(tmp_path: Path, *, gap: GapReason | None = GapReason.RESTART, checkpoints: bool = True) -> Rec:
    """seg 0 closed; seg 1 cut after a checkpoint at 4 chunks and 2 more chunks; seg 2 links to seg 0 and, unless
    `gap` is None, declares seg 1 in a signed gap record of that reason."""
    hub, ident = HubKey.generate(), X25519Identity.generate()
    (tmp_path / "owner.id").write_text(ident.dump(None))
    handle = hub.camera_handle("porch")
    rec = tmp_path / "rec"
    rec.mkdir()

    def writer(seq: int, prev: bytes, f) -> SegmentWriter:  # noqa: ANN001
        return SegmentWriter(f.write, signer=hub, recipients=[ident.recipient], camera_handle=handle, seq=seq,
                             prev_link=prev, clock=lambda: T0 + seq)

    with open(rec / "0.seg", "wb") as f:
        w = writer(0, bytes(32), f)
        w.add_chunk(b"zero", capture_us=T0, key=True)
        s0 = w.close()
    with open(rec / "1.seg", "wb") as f:
        w = writer(1, s0.digest, f)
        for i, data in enumerate(SIGNED):
            w.add_chunk(data, capture_us=T0 + (10 + i) * 1_000_000, key=True)
            if i % 2 and checkpoints:
                w.checkpoint()  # after 2 and after 4 chunks
        for i, data in enumerate(TAIL):
            w.add_chunk(data, capture_us=T0 + (14 + i) * 1_000_000, key=True)
        w.abort()  # the hub died here: no final chunk, no index, no trailer
    with open(rec / "2.seg", "wb") as f:
        w = writer(2, s0.digest, f)
        if gap is not None:
            w.add_gap(gap, from_us=T0 + 14_000_000, until_us=T0 + 20_000_000, lost_first_seq=1, lost_count=1,
                      detail="restart")
        w.add_chunk(b"two", capture_us=T0 + 20_000_000, key=True)
        w.close()
    return Rec(tmp_path, hub, ident)


def decrypt(r: Rec, *args: str):  # noqa: ANN201 - test_cli.Result
    return sealcam("decrypt", "--identity", "owner.id", "--signer", r.hub.signer_string, *args, "rec", cwd=r.dir)


def test_declared_unfinished_segment_gives_its_signed_prefix(tmp_path: Path) -> None:
    r = make_chain(tmp_path)
    assert sealcam("verify", "--signer", r.hub.signer_string, "rec", cwd=tmp_path).rc == 0
    out = decrypt(r)
    assert out.rc == 0, out.err
    assert out.out == b"zero" + b"".join(SIGNED) + b"two"  # the tail after the last checkpoint is left out
    assert ("recovered rec/1.seg (segment 1): unfinished segment, declared by the signed restart gap in rec/2.seg; "
            "decrypting its first 4 chunk(s), 2024-05-01T12:00:10Z..12:00:13Z, signed by its last checkpoint; "
            "2 unsigned chunk(s) after it left out") in out.err
    assert "let through" not in out.err
    # a time range inside the prefix seeks within it
    out = decrypt(r, "--since", "2024-05-01T12:00:11Z", "--until", "2024-05-01T12:00:12Z")
    assert out.rc == 0 and out.out == b"a0a1a2", out.err  # chunk 0 always, then from the key chunk at --since
    # --force still gives everything, tail included, and says so
    out = decrypt(r, "--force")
    assert out.rc == 1 and out.out == b"zero" + b"".join(SIGNED + TAIL) + b"two"
    assert "let through: unverified" in out.err


def test_crash_inside_a_record_still_gives_the_signed_prefix(tmp_path: Path) -> None:
    r = make_chain(tmp_path)
    seg = tmp_path / "rec" / "1.seg"
    seg.write_bytes(seg.read_bytes()[:-7])  # the last record was half written
    out = decrypt(r)
    assert out.rc == 0, out.err
    assert out.out == b"zero" + b"".join(SIGNED) + b"two"
    assert "first 4 chunk(s)" in out.err and "1 unsigned chunk(s) after it left out" in out.err


def test_undeclared_unfinished_segment_is_still_refused(tmp_path: Path) -> None:
    r = make_chain(tmp_path, gap=None)
    out = decrypt(r)
    assert out.rc == 1 and out.out == b""
    assert "missing-final" in out.err and "refusing to decrypt" in out.err and "recovered" not in out.err


def test_declared_segment_without_a_checkpoint_is_skipped(tmp_path: Path) -> None:
    r = make_chain(tmp_path, checkpoints=False)
    out = decrypt(r)
    assert out.rc == 0 and out.out == b"zerotwo", out.err
    assert ("skipped rec/1.seg (segment 1): unfinished segment, declared by the signed restart gap in rec/2.seg; "
            "no checkpoint signs any of its 6 chunk(s)") in out.err


def test_gap_of_another_reason_skips_as_before(tmp_path: Path) -> None:
    r = make_chain(tmp_path, gap=GapReason.FEED_LOST)
    out = decrypt(r)
    assert out.rc == 0 and out.out == b"zerotwo", out.err
    assert "skipped rec/1.seg: unfinished segment, explained by a signed gap record" in out.err


def test_declared_but_modified_in_its_signed_prefix_is_refused(tmp_path: Path) -> None:
    r = make_chain(tmp_path)
    seg = tmp_path / "rec" / "1.seg"
    rep = verify_segment(seg)
    data = bytearray(seg.read_bytes())
    data[rep.records[1].offset + rep.records[1].length - 3] ^= 1  # in chunk 1's ciphertext
    seg.write_bytes(bytes(data))
    out = decrypt(r)
    assert out.rc == 1 and out.out == b"", out.err
    assert "modified: records before this checkpoint differ from what was signed" in out.err
    assert "recovered" not in out.err


def test_prefix_changed_after_verification_stops_decryption(tmp_path: Path) -> None:
    """The library path: records of the signed prefix are checked against the digests the checkpoint covers
    as they are read, as closed segments are against their signed index."""
    r = make_chain(tmp_path)
    paths = sorted((tmp_path / "rec").glob("*.seg"))
    reports = [verify_segment(p, signer=r.hub.public) for p in paths]
    setrep = check_chains(reports)
    assert setrep.ok, setrep.problems
    prefix = restart_prefix(reports[1], setrep)
    assert prefix is not None and prefix.declared_in.endswith("2.seg") and prefix.total_chunks == 6
    assert [c.index for c in prefix.chunks] == [0, 1, 2, 3]
    assert restart_prefix(reports[0], setrep) is None and restart_prefix(reports[2], setrep) is None
    key = unwrap_key(reports[1], [r.ident])
    recs = select(reports[1], None, None, upto=reports[1].verified_count)
    assert [bytes(p.payload) for p in iter_plain(reports[1], key, recs)] == SIGNED
    data = bytearray(paths[1].read_bytes())
    data[recs[2].offset + recs[2].length - 3] ^= 1
    paths[1].write_bytes(bytes(data))
    with pytest.raises(VerificationFailed) as exc:
        list(iter_plain(reports[1], key, recs))
    prob = exc.value.problems[0]
    assert (prob.kind, prob.index, prob.message) == ("modified", 2, "record differs from what the checkpoint signed")
