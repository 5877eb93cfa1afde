"""Cases that must verify (possibly with honest, signed gaps) and decrypt."""

from __future__ import annotations

import struct

from sealcam.format.constants import GapReason, PayloadKind, Suite
from sealcam.format.writer import Padding

from .kit import (
    OWNER2,
    OWNER_PGP,
    SEC,
    SEGMENT_SPAN,
    T0,
    Case,
    ChunkOp,
    GapOp,
    data_chunks,
    expect,
    forced,
    payload,
    sha,
    stream,
    write_segment,
)
from .kit import case as vector


def _one(c: Case, **kw) -> None:  # noqa: ANN003
    """One closed 6-chunk segment written with writer options `kw`, expected to verify and decrypt."""
    ops = data_chunks(c.name, 6, T0)
    identity = kw.pop("identity", None)
    seg = write_segment(c.kit, c.file(0), ops, seq=0, **kw)
    c.done([seg.path], expect(plaintext=stream(ops)), **({"identity": identity} if identity else {}))


@vector
def valid_one_recipient(c: Case) -> None:
    """One closed segment of 6 DATA chunks sealed to one native (X25519/HPKE) recipient."""
    _one(c)


@vector
def valid_two_recipients(c: Case) -> None:
    """Sealed to two native recipients; decrypted with the second one (owner2)."""
    _one(c, recipients=[c.kit.owner.recipient, c.kit.owner2.recipient], identity=OWNER2)


@vector
def valid_openpgp_recipient(c: Case) -> None:
    """Sealed to an OpenPGP key (RSA 2048 with an encryption subkey) only; decrypted with its secret key."""
    _one(c, recipients=[c.kit.pgp], identity=OWNER_PGP)


@vector
def valid_mixed_recipients(c: Case) -> None:
    """Sealed to a native recipient and an OpenPGP key; decrypted with the OpenPGP secret key."""
    _one(c, recipients=[c.kit.owner.recipient, c.kit.pgp], identity=OWNER_PGP)


@vector
def valid_padded(c: Case) -> None:
    """Every chunk record padded to a power-of-two bucket of at least 2 KiB (all records the same size)."""
    _one(c, padding=Padding("pow2", 2048))


@vector
def valid_chacha20(c: Case) -> None:
    """Chunks sealed with ChaCha20-Poly1305 (suite 2) instead of AES-256-GCM."""
    _one(c, suite=Suite.CHACHA20_POLY1305)


@vector
def valid_checkpoints(c: Case) -> None:
    """A signed CHECKPOINT after every 2 chained records (7 chunks)."""
    ops = data_chunks(c.name, 7, T0)
    seg = write_segment(c.kit, c.file(0), ops, seq=0, checkpoint_every=2)
    c.done([seg.path], expect(plaintext=stream(ops)))


@vector
def valid_detached_keys(c: Case) -> None:
    """KEYS record stored apart from the video in 0000.seg.keys (HEADER flag KEYS_DETACHED)."""
    _one(c, detached=True)


@vector
def detached_keys_shredded(c: Case) -> None:
    """Detached-keys segment whose key file was deleted (crypto-shredding): the video still verifies, but
    nobody can decrypt it any more."""
    ops = data_chunks(c.name, 6, T0)
    seg = write_segment(c.kit, c.file(0), ops, seq=0, detached=True)
    seg.path.with_name(seg.path.name + ".keys").unlink()
    c.done([seg.path], expect(decrypt="no-identity"))


@vector
def wrong_identity(c: Case) -> None:
    """Valid segment sealed to owner only; decrypting with owner2 must fail with NoMatchingIdentity."""
    ops = data_chunks(c.name, 6, T0)
    seg = write_segment(c.kit, c.file(0), ops, seq=0)
    c.done([seg.path], expect(decrypt="no-identity"), identity=OWNER2)


@vector
def valid_gap_record(c: Case) -> None:
    """Feed lost mid-segment: chunks 0-2, a signed GAP (FEED_LOST, 3 s..10 s), then chunks 4-7."""
    ops = [*data_chunks(c.name, 3, T0),
           GapOp(GapReason.FEED_LOST, T0 + 3 * SEC, T0 + 10 * SEC, detail="camera feed lost"),
           *data_chunks(c.name, 4, T0 + 10 * SEC, first=3)]
    seg = write_segment(c.kit, c.file(0), ops, seq=0)
    c.done([seg.path], expect(gaps=1, plaintext=stream(ops)))


@vector
def valid_chain_3_segments(c: Case) -> None:
    """Three closed segments (seq 0, 1, 2) of one camera, each linking to the previous one's digest."""
    prev, paths, plain = None, [], b""
    for seq in range(3):
        ops = data_chunks(f"{c.name}/{seq}", 6, T0 + seq * SEGMENT_SPAN)
        seg = write_segment(c.kit, c.file(seq), ops, seq=seq, **({"prev": prev} if prev else {}))
        prev = seg.digest
        paths.append(seg.path)
        plain += stream(ops)
    c.done(paths, expect(plaintext=plain))


@vector
def valid_restart_gap(c: Case) -> None:
    """The sealing service crashed while writing segment 1: 0001.seg is unsigned and cut inside chunk 3
    (a CHECKPOINT covers chunks 0-1). Segment 2 starts with a signed GAP (RESTART, lost_first_seq=1,
    lost_count=1) and links to segment 0. Honest gap: the set verifies; decryption outputs segment 0, the
    checkpoint-covered chunks 0-1 of segment 1, and segment 2."""
    kit = c.kit
    ops0 = data_chunks(f"{c.name}/0", 6, T0)
    s0 = write_segment(kit, c.file(0), ops0, seq=0)
    ops1 = data_chunks(f"{c.name}/1", 4, T0 + SEGMENT_SPAN)
    s1 = write_segment(kit, c.file(1), ops1, seq=1, prev=s0.digest, checkpoint_every=2, close=False)
    buf = s1.bytes()
    cut = s1.entries[3]  # crash half-way through writing chunk 3
    s1.path.write_bytes(buf[: cut.offset + cut.length // 2])
    start2 = T0 + 2 * SEGMENT_SPAN
    ops2 = [GapOp(GapReason.RESTART, ops1[2].t, start2, lost_first_seq=1, lost_count=1, detail="service restart"),
            *data_chunks(f"{c.name}/2", 6, start2)]
    s2 = write_segment(kit, c.file(2), ops2, seq=2, prev=s0.digest)
    covered = stream(ops1[:2])
    partial = stream(ops1[:3])  # with force: chunk 2 too (no signature covers it), chunk 3 is cut
    c.done([s0.path, s1.path, s2.path], expect(
        gaps=1, plaintext=stream(ops0) + covered + stream(ops2),
        force=forced(6 + 3 + 6, stream(ops0) + partial + stream(ops2))))


@vector
def valid_restart_lost_segment(c: Case) -> None:
    """Segment 1 never reached storage; segment 2 carries a signed GAP (RESTART, lost 1..1) and links to
    segment 0. Files: segments 0 and 2."""
    kit = c.kit
    ops0 = data_chunks(f"{c.name}/0", 6, T0)
    s0 = write_segment(kit, c.file(0), ops0, seq=0)
    start2 = T0 + 2 * SEGMENT_SPAN
    ops2 = [GapOp(GapReason.RESTART, T0 + SEGMENT_SPAN, start2, lost_first_seq=1, lost_count=1),
            *data_chunks(f"{c.name}/2", 6, start2)]
    s2 = write_segment(kit, c.file(1), ops2, seq=2, prev=s0.digest)
    c.done([s0.path, s2.path], expect(gaps=1, plaintext=stream(ops0) + stream(ops2)))


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


@vector
def valid_fmp4_like(c: Case) -> None:
    """fMP4-like stream: chunk 0 is VIDEO_INIT (ftyp+moov, KEY), chunks 1-7 VIDEO_FRAGMENTs (moof+mdat) one
    second apart, key frames (KEY flag) at fragments 1, 4 and 7. Seeks start at the last key fragment at or
    before since_us and always include chunk 0."""
    init = _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso6mp41") + _box(b"moov", payload(c.name, 0, 600))
    ops = [ChunkOp(init, T0, PayloadKind.VIDEO_INIT, key=True)]
    keys = {1, 4, 7}
    for i in range(1, 8):
        frag = _box(b"moof", struct.pack(">I", i) + payload(c.name, 100 + i, 60)) + _box(b"mdat", payload(c.name, i))
        ops.append(ChunkOp(frag, T0 + i * SEC, PayloadKind.VIDEO_FRAGMENT, key=i in keys))
    seg = write_segment(c.kit, c.file(0), ops, seq=0)

    def seek(since: int, until: int | None = None) -> dict:
        start = max([i for i, op in enumerate(ops) if op.key and op.t <= since], default=0)
        picked = [i for i in range(start, len(ops)) if until is None or ops[i].t <= until]
        if start > 0:
            picked.insert(0, 0)
        out = {"since_us": since}
        if until is not None:
            out["until_us"] = until
        out.update(first_index=picked[1], indexes=picked,
                   plaintext_sha256=sha(b"".join(ops[i].payload for i in picked)))
        return out

    seeks = [seek(T0 - 10 * SEC), seek(T0 + 4 * SEC - 1), seek(T0 + 4 * SEC), seek(T0 + 5 * SEC + SEC // 2),
             seek(T0 + 4 * SEC, T0 + 5 * SEC), seek(T0 + 100 * SEC)]
    c.done([seg.path], expect(plaintext=stream(ops)), seek=seeks)
