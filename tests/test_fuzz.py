"""Fuzzing the container v1 parsers, verifier and decryptor, and the key-file parsers (hypothesis).

A handful of small valid segments are built once; each example mutates one of them (bit flips, overwrites,
truncation, insertion, deletion, duplication, splicing, forged record lengths with a valid CRC, whole-record
drops/duplicates/swaps) and feeds the result to every entry point that reads untrusted bytes. Properties:

- nothing raises but sealcam's own errors (SealcamError subclasses);
- a file that decrypts without `force` yields exactly the plaintext that was sealed (no undetected
  tampering), and a file that verifies OK against the pinned hub key does decrypt;
- verification allocates a bounded amount of memory whatever the length fields claim.

SEALCAM_FUZZ_EXAMPLES scales the number of examples (default 300 per test).
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealcam.format import reader
from sealcam.format.constants import (
    MAGIC,
    MAX_BODY,
    RECORD_HEADER_LEN,
    RECORD_SYNC,
    STREAM_KINDS,
    GapReason,
    PayloadKind,
    RecordFlag,
    RecordType,
    Suite,
)
from sealcam.format.decrypt import decrypt_segment, light_report
from sealcam.format.digests import chain_next, chain_start, header_digest, segment_message, sha256
from sealcam.format.errors import SealcamError
from sealcam.format.records import (
    IndexEntry,
    Trailer,
    decode_record_header,
    encode_index_body,
    encode_record,
    encode_record_header,
)
from sealcam.format.verify import verify_segment
from sealcam.format.writer import Padding, SegmentWriter
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import X25519Identity

EXAMPLES = int(os.environ.get("SEALCAM_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
T0 = 1_700_000_000_000_000


# --- the seed corpus ------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Seed:
    name: str
    data: bytes
    plain: bytes  # what decrypt writes (the stream kinds, concatenated)
    closed: bool
    keys: bytes | None  # detached KEYS file, if any
    records: tuple[tuple[int, RecordType, int], ...]  # (offset, type, total length) of each record

    def __repr__(self) -> str:
        return f"Seed({self.name!r}, {len(self.data)} bytes)"


class Corpus:
    """The seeds and the keys that made them (a plain class: hypothesis prints it in one line)."""

    def __init__(self, hub: HubKey, ident: X25519Identity, seeds: dict[str, Seed],
                 plain_by_id: dict[bytes, bytes]) -> None:
        self.hub, self.ident, self.seeds = hub, ident, seeds
        self.plain_by_id = plain_by_id  # segment id -> plaintext
        self.max_record = max(n for s in seeds.values() for _, _, n in s.records)

    def __repr__(self) -> str:
        return f"Corpus({sorted(self.seeds)})"


def _records(data: bytes) -> tuple[tuple[int, RecordType, int], ...]:
    out = []
    for item in reader.scan(io.BytesIO(data)):
        assert isinstance(item, reader.RawRecord), item
        out.append((item.offset, item.header.type, item.header.total))
    return tuple(out)


def _seal(hub, idents, name, chunks, *, seq=0, close=True, gaps=(), detached=False, **kw) -> tuple[Seed, bytes]:  # noqa: ANN001
    buf, keys = io.BytesIO(), io.BytesIO()
    clock = iter(range(T0 + 10**8, T0 + 10**9, 1000))  # after every capture time below
    w = SegmentWriter(buf.write, signer=hub, recipients=[i.recipient for i in idents],
                      camera_handle=hub.camera_handle("cam-" + name), seq=seq, clock=lambda: next(clock),
                      write_keys=keys.write if detached else None, **kw)
    plain = bytearray()
    for i, (kind, payload, key) in enumerate(chunks):
        if i in gaps:
            w.add_gap(GapReason.FEED_LOST, from_us=T0 + i, until_us=T0 + i + 5, lost_first_seq=seq,
                      lost_count=1, detail="feed lost ✓")
        final = close and i == len(chunks) - 1 and kind is PayloadKind.VIDEO_FRAGMENT
        w.add_chunk(payload, kind=kind, capture_us=T0 + 1_000_000 * i, key=key, final=final)
        if kind in STREAM_KINDS:
            plain += payload
    if close:
        w.close()
    else:
        w.abort()
    data = buf.getvalue()
    seed = Seed(name, data, bytes(plain), close, keys.getvalue() if detached else None, _records(data))
    return seed, w.header.segment_id


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    rnd = __import__("random").Random(1234)
    hub, ident, other = HubKey.generate(), X25519Identity.generate(), X25519Identity.generate()

    def blob(lo: int, hi: int) -> bytes:
        return rnd.randbytes(rnd.randint(lo, hi))

    D, I, F = PayloadKind.DATA, PayloadKind.VIDEO_INIT, PayloadKind.VIDEO_FRAGMENT  # noqa: E741
    specs = {
        "plain": dict(chunks=[(D, blob(0, 3000), i == 0) for i in range(8)] + [(D, b"", False)]),
        "padded": dict(chunks=[(D, blob(1, 2000), True) for _ in range(6)], padding=Padding("multiple", 512),
                       suite=Suite.CHACHA20_POLY1305),
        "checkpoints": dict(chunks=[(D, blob(1, 1500), i % 3 == 0) for i in range(7)], checkpoint_every=2, seq=5),
        "gap": dict(chunks=[(D, blob(1, 1500), False) for _ in range(5)], gaps=(0, 3), seq=7),
        "fmp4": dict(chunks=[(I, blob(200, 600), True)] + [(F, blob(500, 2500), i % 2 == 0) for i in range(5)]
                     + [(PayloadKind.THUMBNAIL, blob(100, 400), False),
                        (PayloadKind.EVENT, b'{"label":"person"}', False),
                        (PayloadKind.METADATA, b'{"name":"x"}', False), (F, blob(100, 900), False)],
                     padding=Padding("pow2", 1024), checkpoint_every=3),
        "detached": dict(chunks=[(D, blob(1, 1200), True) for _ in range(4)], detached=True),
        "unclosed": dict(chunks=[(D, blob(1, 1200), False) for _ in range(5)], checkpoint_every=2, close=False),
    }
    seeds, plain_by_id = {}, {}
    for name, spec in specs.items():
        idents = [ident, other] if name == "gap" else [ident]
        seed, seg_id = _seal(hub, idents, name, **spec)
        seeds[name] = seed
        plain_by_id[seg_id] = seed.plain
    return Corpus(hub, ident, seeds, plain_by_id)


def test_corpus_is_valid(corpus: Corpus, tmp_path: Path) -> None:
    for seed in corpus.seeds.values():
        path = _write(tmp_path, corpus, seed.data)
        rep = verify_segment(path, signer=corpus.hub.public)
        assert rep.ok is seed.closed, (seed.name, rep.problems)
        out = bytearray()
        decrypt_segment(path, [corpus.ident], out.extend, force=not seed.closed)
        assert bytes(out) == seed.plain, seed.name


# --- mutations --------------------------------------------------------------------------------------------

_LENGTHS = st.one_of(
    st.integers(0, 2**32 - 1),
    st.sampled_from(sorted({v + d for v in MAX_BODY.values() for d in (-1, 0, 1)} | {2**32 - 1, 2**31})),
    st.integers(0, 4096),
)


def _record_op(draw, corpus: Corpus, seed: Seed) -> bytes:  # noqa: ANN001
    """Whole-record edits of the original (what an attacker with storage access would try first)."""
    data, recs = seed.data, seed.records
    op = draw(st.sampled_from(["drop", "dup", "swap", "foreign", "length"]))
    i = draw(st.integers(0, len(recs) - 1))
    off, _, n = recs[i]
    rec = data[off : off + n]
    if op == "drop":
        return data[:off] + data[off + n :]
    if op == "dup":
        at = draw(st.sampled_from([o for o, _, _ in recs] + [len(data)]))
        return data[:at] + rec + data[at:]
    if op == "swap":
        j = draw(st.integers(0, len(recs) - 1))
        (a, _, na), (b, _, nb) = sorted([recs[i], recs[j]])
        if a == b:
            return data
        return data[:a] + data[b : b + nb] + data[a + na : b] + data[a : a + na] + data[b + nb :]
    if op == "foreign":  # a record of another segment (other camera, or same type elsewhere)
        other = corpus.seeds[draw(st.sampled_from(sorted(corpus.seeds)))]
        o_off, _, o_n = other.records[draw(st.integers(0, len(other.records) - 1))]
        replace = draw(st.booleans())
        return data[:off] + other.data[o_off : o_off + o_n] + data[off + n if replace else off :]
    # forged length (and maybe type/flags) with a valid CRC, so the reader has to believe it
    rtype = draw(st.sampled_from(list(RecordType)))
    flags = draw(st.sampled_from([0, RecordFlag.FINAL, RecordFlag.KEY, RecordFlag.KEYS_DETACHED]))
    if flags & ~{RecordType.HEADER: 4, RecordType.CHUNK: 3}.get(rtype, 0):
        flags = 0
    return data[:off] + encode_record_header(rtype, flags, draw(_LENGTHS)) + data[off + RECORD_HEADER_LEN :]


def _byte_op(draw, corpus: Corpus, data: bytes) -> bytes:  # noqa: ANN001
    op = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "delete", "duplicate", "splice"]))
    n = len(data)
    if n == 0:
        return draw(st.binary(max_size=64))
    pos = draw(st.integers(0, n - 1))
    if op == "flip":
        b = bytearray(data)
        b[pos] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if op == "overwrite":
        junk = draw(st.binary(min_size=1, max_size=64))
        return data[:pos] + junk + data[pos + len(junk) :]
    if op == "truncate":
        return data[:pos]
    if op == "insert":
        junk = draw(st.one_of(st.binary(min_size=1, max_size=64), st.just(RECORD_SYNC),
                              st.builds(lambda t, k: encode_record_header(t, 0, k),
                                        st.sampled_from(list(RecordType)), _LENGTHS)))
        return data[:pos] + junk + data[pos:]
    if op == "delete":
        return data[:pos] + data[pos + draw(st.integers(1, 4096)) :]
    if op == "duplicate":
        k = draw(st.integers(1, 4096))
        at = draw(st.integers(0, n))
        return data[:at] + data[pos : pos + k] + data[at:]
    other = corpus.seeds[draw(st.sampled_from(sorted(corpus.seeds)))].data
    return data[:pos] + other[draw(st.integers(0, len(other) - 1)) :]


def _mutant(draw, corpus: Corpus) -> tuple[Seed, bytes]:  # noqa: ANN001
    seed = corpus.seeds[draw(st.sampled_from(sorted(corpus.seeds)))]
    data = seed.data
    record_level = draw(st.booleans())
    if record_level:
        data = _record_op(draw, corpus, seed)
    for _ in range(draw(st.integers(0 if record_level else 1, 3))):
        data = _byte_op(draw, corpus, data)
    return seed, data


# --- running one mutant through every entry point ---------------------------------------------------------


def _write(d: Path, corpus: Corpus, data: bytes) -> Path:
    """Write a mutant; beside it, the detached key file (a splice may turn any mutant into that segment)."""
    path = d / "m.seg"
    path.write_bytes(data)
    (d / "m.seg.keys").write_bytes(corpus.seeds["detached"].keys)
    return path


def _own(fn, *args, **kw):  # noqa: ANN001, ANN202
    """Call fn; sealcam's own errors are expected answers, anything else fails the test."""
    try:
        return fn(*args, **kw)
    except SealcamError as exc:
        return exc


def _exercise(corpus: Corpus, seed: Seed, data: bytes, d: Path) -> None:
    path = _write(d, corpus, data)
    rep = verify_segment(path, signer=corpus.hub.public)
    verify_segment(path)  # unpinned: whatever signer the header names
    light = light_report(path)
    if light is not None and rep.ok:
        assert light.digest == rep.digest
    items = list(reader.scan(io.BytesIO(data)))
    assert all(isinstance(x, (reader.RawRecord, reader.Damage)) for x in items)
    _own(reader.read_tail, io.BytesIO(data), len(data))

    results = {}
    for force in (False, True):
        out = bytearray()
        results[force] = (_own(decrypt_segment, path, [corpus.ident], out.extend, force=force), bytes(out))
    err, out = results[False]
    if not isinstance(err, SealcamError):
        # decrypted without force: must be exactly what was sealed in that segment
        seg_id = (light_report(path) or rep).header.segment_id
        assert seg_id in corpus.plain_by_id
        assert out == corpus.plain_by_id[seg_id], "tampering went undetected"
    if rep.ok:
        assert not isinstance(err, SealcamError), f"verified OK but decrypt refused: {err}"
        assert out == corpus.plain_by_id[rep.header.segment_id]
    # a segment sealed and closed by the pinned hub never loses its records to a mutation silently:
    # if nothing was changed, nothing may be reported
    if data == seed.data:
        assert rep.ok is seed.closed


@settings(FUZZ, max_examples=2 * EXAMPLES)
@given(data=st.data())
def test_mutated_segments(corpus: Corpus, tmp_path_factory, data) -> None:  # noqa: ANN001
    seed, mutant = _mutant(data.draw, corpus)
    _exercise(corpus, seed, mutant, tmp_path_factory.mktemp("fz", numbered=True))


# --- memory bound ---------------------------------------------------------------------------------------


def _forged_lengths(draw, corpus: Corpus) -> tuple[Seed, bytes]:  # noqa: ANN001
    """Every record header replaced, with some probability, by one claiming a huge (but CRC-valid) length."""
    seed = corpus.seeds[draw(st.sampled_from(sorted(corpus.seeds)))]
    data = bytearray(seed.data)
    for off, rtype, _ in seed.records:
        if draw(st.integers(0, 3)) == 0:
            t = draw(st.sampled_from([rtype, RecordType.CHUNK, RecordType.INDEX, RecordType.KEYS]))
            n = draw(st.one_of(st.just(MAX_BODY[t]), st.integers(0, MAX_BODY[t]), _LENGTHS))
            data[off : off + RECORD_HEADER_LEN] = encode_record_header(t, 0, n)
    out = bytes(data)
    if draw(st.booleans()):
        out = _byte_op(draw, corpus, out)
    return seed, out


@settings(FUZZ, max_examples=max(EXAMPLES // 2, 20))
@given(data=st.data())
def test_memory_is_bounded(corpus: Corpus, tmp_path_factory, data) -> None:  # noqa: ANN001
    seed, mutant = _forged_lengths(data.draw, corpus) if data.draw(st.booleans()) else _mutant(data.draw, corpus)
    path = _write(tmp_path_factory.mktemp("mem", numbered=True), corpus, mutant)
    bound = 8 * 2**20 + 4 * corpus.max_record
    for fn in (lambda: verify_segment(path, signer=corpus.hub.public), lambda: light_report(path),
               lambda: list(reader.scan(io.BytesIO(mutant)))):
        tracemalloc.start()
        try:
            fn()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < bound, f"peak {peak} bytes, bound {bound}"


# --- a malicious (or broken) hub: everything re-signed with the real key ----------------------------------


def _resign(hub: HubKey, data: bytes, *, rebuild_index: bool, fix_keys: bool) -> bytes:
    """Re-seal whatever structure `data` has with the hub's key, so checks past the signature are reached."""
    items = [x for x in reader.scan(io.BytesIO(data), start=len(MAGIC)) if isinstance(x, reader.RawRecord)]
    hdr = next((x for x in items if x.header.type is RecordType.HEADER), None)
    if hdr is None or len(bytes(hdr.body)) != 148:
        return data
    out = bytearray(data)
    if fix_keys:
        keys = next((x for x in items if x.header.type is RecordType.KEYS), None)
        if keys is not None:  # commit the header to the (possibly altered) KEYS record
            body = bytearray(hdr.body)
            body[116:148] = sha256(keys.data)
            out[hdr.offset + RECORD_HEADER_LEN : hdr.offset + hdr.header.total] = body
    hrec = bytes(out[hdr.offset : hdr.offset + hdr.header.total])
    hd = header_digest(hrec)
    chain = chain_start(hd)
    chained = [x for x in items if x.header.type in (RecordType.CHUNK, RecordType.GAP)]
    entries = []
    for x in chained:
        digest = sha256(x.data)
        chain = chain_next(chain, digest)
        t = int.from_bytes(bytes(x.body[36:44]), "big", signed=True) if x.header.length >= 44 else 0
        entries.append(IndexEntry(x.header.type, x.header.flags, t, x.offset, x.header.total, digest))
    idx = next((x for x in reversed(items) if x.header.type is RecordType.INDEX), None)
    if rebuild_index or idx is None:
        end = max((x.offset + x.header.total for x in chained), default=hdr.offset + hdr.header.total)
        index_record = encode_record(RecordType.INDEX, 0, encode_index_body(entries))
        out = out[:end] + index_record
        index_offset = end
    else:
        index_record = bytes(out[idx.offset : idx.offset + idx.header.total])
        out = out[: idx.offset + idx.header.total]
        index_offset = idx.offset
    t = Trailer(len(entries), index_offset, hd, sha256(index_record), chain, b"")
    t = dataclasses.replace(t, signature=hub.sign(segment_message(t.signed_fields())))
    return bytes(out) + encode_record(RecordType.TRAILER, 0, t.encode())


def _body_op(draw, corpus: Corpus, seed: Seed) -> bytes:  # noqa: ANN001
    """Alter one record's body (any type), keeping its record header valid for the new length."""
    i = draw(st.integers(0, len(seed.records) - 1))
    off, _, n = seed.records[i]
    head = seed.data[off : off + RECORD_HEADER_LEN]
    rh = decode_record_header(head, off)
    body = seed.data[off + RECORD_HEADER_LEN : off + n]
    for _ in range(draw(st.integers(1, 3))):
        body = _byte_op(draw, corpus, body) if body else draw(st.binary(max_size=200))
    if rh.type is RecordType.INDEX and draw(st.booleans()):  # an index with arbitrary entries
        ents = draw(st.lists(st.tuples(st.sampled_from([RecordType.CHUNK, RecordType.GAP, 0, 7]),
                                       st.integers(0, 3), st.integers(-2**63, 2**63 - 1),
                                       st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)), max_size=12))
        body = struct.pack(">I", len(ents)) + b"".join(
            struct.pack(">BBHqQI32s", t, f, 0, tm, o, ln, bytes(32)) for t, f, tm, o, ln in ents)
    flags = rh.flags
    return seed.data[:off] + encode_record_header(rh.type, flags, len(body)) + body + seed.data[off + n :]


@FUZZ
@given(data=st.data())
def test_hub_signed_garbage(corpus: Corpus, tmp_path_factory, data) -> None:  # noqa: ANN001
    """Structures only a malicious hub could sign: verify and decrypt must still fail cleanly."""
    seed = corpus.seeds[data.draw(st.sampled_from(sorted(corpus.seeds)))]
    mutant = _body_op(data.draw, corpus, seed) if data.draw(st.booleans()) else _mutant(data.draw, corpus)[1]
    mutant = _resign(corpus.hub, mutant, rebuild_index=data.draw(st.booleans()), fix_keys=data.draw(st.booleans()))
    path = _write(tmp_path_factory.mktemp("hub", numbered=True), corpus, mutant)
    verify_segment(path, signer=corpus.hub.public)
    light_report(path)
    list(reader.scan(io.BytesIO(mutant)))
    for force in (False, True):
        _own(decrypt_segment, path, [corpus.ident], lambda b: None, force=force)
        _own(decrypt_segment, path, [corpus.ident], lambda b: None, force=force, since_us=T0 + 2_500_000)
