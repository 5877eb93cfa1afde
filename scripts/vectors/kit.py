"""Building blocks of the test-vector generator: keys, deterministic payloads, segment writing, cases.

Expectations are declared by each case (what a careful verifier must say), never read back from the
library: tests/test_vectors.py then checks the library against them.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sealcam.format.constants import HASH_LEN, STREAM_KINDS, GapReason, PayloadKind, RecordType, Suite
from sealcam.format.reader import RawRecord, read_magic, scan
from sealcam.format.records import IndexEntry
from sealcam.format.writer import Padding, SealedSegment, SegmentWriter
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import PgpSecretIdentity, X25519Identity
from sealcam.keys.recipients import PgpRecipient, load_pgp_key

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds since the epoch
SEC = 1_000_000
SEGMENT_SPAN = 60 * SEC  # segment `seq` of a chain starts at T0 + seq * SEGMENT_SPAN
ZERO_LINK = bytes(HASH_LEN)

OWNER = "keys/owner.identity"
OWNER2 = "keys/owner2.identity"
OWNER_PGP = "keys/owner-pgp.sec.asc"


# --- keys ---------------------------------------------------------------------------------------------


def _pgp_pair() -> tuple[str, str]:
    """A fresh OpenPGP key like gpg makes: RSA 2048 primary (sign/certify) + RSA 2048 encryption subkey."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgpy 0.6 touches algorithms cryptography calls decrepit
        import pgpy
        from pgpy.constants import (
            CompressionAlgorithm,
            HashAlgorithm,
            KeyFlags,
            PubKeyAlgorithm,
            SymmetricKeyAlgorithm,
        )

        key = pgpy.PGPKey.new(PubKeyAlgorithm.RSAEncryptOrSign, 2048)
        uid = pgpy.PGPUID.new("sealcam test-vector owner", email="owner@example.invalid")
        key.add_uid(uid, usage={KeyFlags.Sign, KeyFlags.Certify}, hashes=[HashAlgorithm.SHA256],
                    ciphers=[SymmetricKeyAlgorithm.AES256], compression=[CompressionAlgorithm.Uncompressed])
        sub = pgpy.PGPKey.new(PubKeyAlgorithm.RSAEncryptOrSign, 2048)
        key.add_subkey(sub, usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage})
        return str(key.pubkey), str(key)


class Keys:
    """Every key the cases use, generated fresh and written to <out>/keys/."""

    def __init__(self, out: Path) -> None:
        self.hub = HubKey.generate()
        self.other_hub = HubKey.generate()
        self.owner = X25519Identity.generate()
        self.owner2 = X25519Identity.generate()
        pub_text, sec_text = _pgp_pair()
        self.pgp = PgpRecipient(load_pgp_key(pub_text, "owner-pgp.pub.asc"), "owner-pgp.pub.asc")
        pgp_identity = PgpSecretIdentity(load_pgp_key(sec_text, "owner-pgp.sec.asc"), "owner-pgp.sec.asc", None)
        probe = self.pgp.wrap(bytes(range(32)), b"probe")  # pgpy must both encrypt and decrypt with the pair
        if pgp_identity.unwrap(probe, b"probe") != bytearray(range(32)):
            raise SystemExit("make_vectors: pgpy cannot decrypt what it encrypted to the generated key pair")
        d = out / "keys"
        d.mkdir(parents=True)
        files = {
            "owner.identity": self.owner.dump(None),
            "owner.recipient": self.owner.label + "\n",
            "owner2.identity": self.owner2.dump(None),
            "hub.key": self.hub.dump(None),
            "hub.signer": self.hub.signer_string + "\n",
            "other-hub.key": self.other_hub.dump(None),
            "owner-pgp.pub.asc": pub_text + "\n",
            "owner-pgp.sec.asc": sec_text + "\n",
        }
        for name, text in files.items():
            (d / name).write_text(text)

    def handle(self, camera: str) -> bytes:
        return self.hub.camera_handle(camera)


# --- payloads and plans ---------------------------------------------------------------------------------


def payload(tag: str, i: int, size: int | None = None) -> bytes:
    """Deterministic bytes (so plaintext digests are stable across regenerations), 500..1499 by default."""
    n = 500 + (i * 389) % 1000 if size is None else size
    out = bytearray()
    c = 0
    while len(out) < n:
        out += hashlib.sha256(f"{tag}/{i}/{c}".encode()).digest()
        c += 1
    return bytes(out[:n])


@dataclass(frozen=True)
class ChunkOp:
    payload: bytes
    t: int  # capture_us
    kind: PayloadKind = PayloadKind.DATA
    key: bool = False


@dataclass(frozen=True)
class GapOp:
    reason: GapReason
    from_us: int
    until_us: int
    lost_first_seq: int = 0
    lost_count: int = 0
    detail: str = ""


def data_chunks(tag: str, n: int, start: int, first: int = 0) -> list[ChunkOp]:
    """n DATA chunks one second apart, payloads payload(tag, first..first+n-1)."""
    return [ChunkOp(payload(tag, i), start + (i - first) * SEC) for i in range(first, first + n)]


def stream(ops: list) -> bytes:
    """What a decryptor writes out for these chunks: the stream payloads, in order."""
    return b"".join(op.payload for op in ops if isinstance(op, ChunkOp) and op.kind in STREAM_KINDS)


# --- writing segments -------------------------------------------------------------------------------------


@dataclass
class Seg:
    path: Path
    ops: list
    entries: list[IndexEntry]  # one per chained record, as the writer returned them (offsets, lengths)
    sealed: SealedSegment | None  # None when the segment was not closed (a crash)

    @property
    def digest(self) -> bytes:
        assert self.sealed is not None
        return self.sealed.digest

    def bytes(self) -> bytearray:
        return bytearray(self.path.read_bytes())

    def record(self, rtype: RecordType, nth: int = 0) -> RawRecord:
        """The nth record of a type, found by the library's own reader in the (still valid) file."""
        with open(self.path, "rb") as f:
            read_magic(f)
            found = [r for r in scan(f) if isinstance(r, RawRecord) and r.header.type is rtype]
        return found[nth]


def write_segment(
    kit: Keys, path: Path, ops: list, *, seq: int, prev: bytes = ZERO_LINK, camera: str = "front-door",
    signer: HubKey | None = None, recipients: list | None = None, suite: Suite = Suite.AES_256_GCM,
    padding: Padding | None = None, checkpoint_every: int = 0, detached: bool = False, close: bool = True,
    created: int | None = None,
) -> Seg:
    """Seal `ops` into `path` (plus `path`.keys when detached). The last op becomes the final chunk when
    `close`; otherwise the writer is aborted, leaving what a crash leaves."""
    if close and not isinstance(ops[-1], ChunkOp):
        raise ValueError("a closed segment must end with a chunk")
    created = (T0 + seq * SEGMENT_SPAN) if created is None else created
    keys_out: list[bytes] = []
    entries: list[IndexEntry] = []
    with open(path, "wb") as f:
        w = SegmentWriter(
            f.write, signer=signer or kit.hub, recipients=recipients or [kit.owner.recipient],
            camera_handle=kit.handle(camera), seq=seq, prev_link=prev, suite=suite, padding=padding,
            checkpoint_every=checkpoint_every, write_keys=keys_out.append if detached else None,
            clock=lambda: created,
        )
        for k, op in enumerate(ops):
            if isinstance(op, ChunkOp):
                final = close and k == len(ops) - 1
                entries.append(w.add_chunk(op.payload, kind=op.kind, capture_us=op.t, key=op.key, final=final))
            else:
                entries.append(w.add_gap(op.reason, from_us=op.from_us, until_us=op.until_us,
                                         lost_first_seq=op.lost_first_seq, lost_count=op.lost_count,
                                         detail=op.detail))
        if close:
            sealed = w.close()
        else:
            w.abort()
            sealed = None
    if detached:
        path.with_name(path.name + ".keys").write_bytes(b"".join(keys_out))
    return Seg(path, ops, entries, sealed)


# --- byte surgery ------------------------------------------------------------------------------------------


def flip(buf: bytearray, offset: int, mask: int = 0x01) -> None:
    buf[offset] ^= mask


def span(e: IndexEntry | RawRecord) -> slice:
    """The bytes of one record in its file."""
    if isinstance(e, RawRecord):
        return slice(e.offset, e.offset + len(e.data))
    return slice(e.offset, e.offset + e.length)


# --- cases -------------------------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expect(
    *, problems: tuple[str, ...] = (), gaps: int = 0, decrypt: str = "ok", plaintext: bytes | None = None,
    force: dict | None = None,
) -> dict:
    """The set-level expectations of a case (see tests/vectors/README.md)."""
    out: dict = {"verify_ok": not problems, "problems": sorted(set(problems)), "gaps": gaps, "decrypt": decrypt}
    if decrypt == "ok":
        assert plaintext is not None
        out["plaintext_sha256"] = sha(plaintext)
    if force is not None:
        out["force_decrypt"] = force
    return out


def forced(chunks: int = 0, plaintext: bytes | None = None, result: str = "ok") -> dict:
    """Expectations of the same decryption with force=True."""
    out: dict = {"result": result, "chunks": chunks}
    if result == "ok":
        out["plaintext_sha256"] = sha(plaintext if plaintext is not None else b"")
    return out


class Case:
    def __init__(self, out: Path, name: str, description: str, kit: Keys) -> None:
        self.name = name
        self.description = " ".join(description.split())
        self.dir = out / name
        self.dir.mkdir()
        self.kit = kit

    def file(self, i: int) -> Path:
        return self.dir / f"{i:04d}.seg"

    def done(self, files: list[Path], expectation: dict, *, identity: str = OWNER, signer: str | None = None,
             seek: list[dict] | None = None) -> None:
        names = [p.name for p in files]
        doc = {
            "description": self.description,
            "files": names,
            "signer": signer or self.kit.hub.signer_string,
            "identity": identity,
            "expect": expectation,
        }
        keys = [n + ".keys" for n in names if (self.dir / (n + ".keys")).exists()]
        if keys:
            doc["key_files"] = keys
        if seek:
            doc["seek"] = seek
        present = sorted(p.name for p in self.dir.iterdir())
        if present != sorted(names + keys):
            raise RuntimeError(f"{self.name}: files on disk {present} differ from those listed {names + keys}")
        (self.dir / "case.json").write_text(json.dumps(doc, indent=2) + "\n")


#: name -> builder, in definition order; filled by the @case decorator of the case modules.
REGISTRY: dict[str, Callable[[Case], None]] = {}


def case(fn: Callable[[Case], None]) -> Callable[[Case], None]:
    name = fn.__name__.replace("_", "-")
    if name in REGISTRY:
        raise RuntimeError(f"duplicate case {name}")
    REGISTRY[name] = fn
    return fn
