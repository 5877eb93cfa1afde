"""Fuzzing the record decoders and key-file parsers with arbitrary bytes and text (split from test_fuzz.py).

Property: only the format's own errors (FormatError, KeyMaterialError) come out, never another exception."""

from __future__ import annotations

import base64
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealcam.format.constants import (
    MAX_BODY,
    GapReason,
    RecordFlag,
    RecordType,
    StanzaType,
    Suite,
)
from sealcam.format.errors import FormatError, KeyMaterialError
from sealcam.format.records import (
    Checkpoint,
    ChunkHead,
    Gap,
    IndexEntry,
    SegmentHeader,
    Stanza,
    Trailer,
    decode_index_body,
    decode_keys_body,
    decode_record_header,
    encode_index_body,
    encode_keys_body,
    encode_record_header,
)
from sealcam.keys import encoding, secretfile

EXAMPLES = int(os.environ.get("SEALCAM_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
T0 = 1_700_000_000_000_000



_LENGTHS = st.one_of(
    st.integers(0, 2**32 - 1),
    st.sampled_from(sorted({v + d for v in MAX_BODY.values() for d in (-1, 0, 1)} | {2**32 - 1, 2**31})),
    st.integers(0, 4096),
)

# --- record decoders on arbitrary bytes -------------------------------------------------------------------

_VALID_BODIES = {
    "header": SegmentHeader(Suite.AES_256_GCM, bytes(16), bytes(16), 3, T0, bytes(32), bytes(32),
                            bytes(32)).encode_body(),
    "keys": encode_keys_body([Stanza(StanzaType.HPKE_X25519, bytes(8), bytes(80)),
                              Stanza(StanzaType.OPENPGP, bytes(8), b"pgp")]),
    "gap": Gap(bytes(16), bytes(16), 2, GapReason.RESTART, T0, T0 + 5, 1, 2, "détail").encode(),
    "index": encode_index_body([IndexEntry(RecordType.CHUNK, 3, T0, 100, 200, bytes(32)),
                                IndexEntry(RecordType.GAP, 0, T0, 300, 100, bytes(32))]),
    "trailer": Trailer(3, 500, bytes(32), bytes(32), bytes(32), bytes(64)).encode(),
    "checkpoint": Checkpoint(2, bytes(32), bytes(64)).encode(),
    "chunk": ChunkHead(bytes(16), bytes(16), 4, T0).encode() + bytes(30),
}
_DECODERS = {
    "header": lambda b: SegmentHeader.decode(b, 0, 8),
    "header-detached": lambda b: SegmentHeader.decode(b, RecordFlag.KEYS_DETACHED, 8),
    "keys": lambda b: decode_keys_body(b, 8),
    "gap": lambda b: Gap.decode(b, 8),
    "index": lambda b: decode_index_body(b, 8),
    "trailer": lambda b: Trailer.decode(b, 8),
    "checkpoint": lambda b: Checkpoint.decode(b, 8),
    "chunk": lambda b: ChunkHead.decode(b, 8),
    "chunk-view": lambda b: ChunkHead.decode(memoryview(b), 8),
    "record-header": lambda b: decode_record_header(b, 8),
}


@st.composite
def _near_valid(draw, name: str) -> bytes:  # noqa: ANN001
    body = bytearray(_VALID_BODIES[name.split("-")[0]] if name != "record-header" else
                     encode_record_header(draw(st.sampled_from(list(RecordType))), 0, draw(_LENGTHS)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, len(body)))
        if op == 0 and pos < len(body):
            body[pos] = draw(st.integers(0, 255))
        elif op == 1:
            del body[pos:]
        elif op == 2:
            body[pos:pos] = draw(st.binary(max_size=16))
        else:
            struct.pack_into(">H", body, min(pos, max(len(body) - 2, 0)), draw(st.integers(0, 65535))) \
                if len(body) >= 2 else None
    if name == "record-header" and len(body) >= 12 and draw(st.booleans()):
        body[12:16] = struct.pack(">I", zlib.crc32(bytes(body[:12])))
    return bytes(body)


@pytest.mark.parametrize("name", sorted(_DECODERS))
@settings(FUZZ, max_examples=max(EXAMPLES // 3, 20))
@given(data=st.data())
def test_record_decoders_raise_only_format_error(name: str, data) -> None:  # noqa: ANN001
    body = data.draw(st.one_of(st.binary(max_size=400), _near_valid(name)))
    try:
        _DECODERS[name](body)
    except FormatError:
        pass


# --- key-file parsers ---------------------------------------------------------------------------------------

_KINDS = ["IDENTITY", "HUB SIGNING KEY"]


@st.composite
def _key_texts(draw) -> str:  # noqa: ANN001
    shape = draw(st.integers(0, 2))
    if shape == 0:
        return draw(st.text(max_size=300))
    kind = draw(st.sampled_from(_KINDS + ["OTHER", ""]))
    enc = draw(st.booleans())
    if draw(st.booleans()):
        blob = draw(st.binary(max_size=120))
    elif enc:  # well-formed envelope: scrypt parameters out of range, extreme (refused) or cheap (derived)
        params = draw(st.one_of(st.tuples(*[st.integers(0, 255)] * 3).filter(lambda t: not 10 <= t[0] <= 22),
                                st.tuples(st.integers(18, 22), st.integers(9, 32), st.integers(1, 16)),
                                st.tuples(st.integers(10, 11), st.integers(1, 4), st.integers(1, 2))))
        blob = bytes([draw(st.sampled_from([1, 1, 0, 2])), *params]) + draw(st.binary(min_size=76, max_size=76))
    else:
        blob = bytes([draw(st.integers(0, 1))]) + draw(st.binary(min_size=31, max_size=33))
    b64 = base64.encodebytes(blob).decode()
    if draw(st.booleans()) and b64:
        pos = draw(st.integers(0, len(b64) - 1))
        b64 = b64[:pos] + draw(st.text(max_size=4)) + b64[pos + 1 :]
    label = ("ENCRYPTED " if enc else "") + kind
    return f"# c\n-----BEGIN SEALCAM {label}-----\n{b64}-----END SEALCAM {label}-----\n" + draw(st.text(max_size=20))


@settings(FUZZ, max_examples=EXAMPLES)
@given(text=_key_texts(), kind=st.sampled_from(_KINDS), pw=st.sampled_from([None, b"pw"]))
def test_load_secret_raises_only_key_material_error(text: str, kind: str, pw: bytes | None) -> None:
    try:
        out = secretfile.load_secret(kind, text, pw, "fuzz")
    except KeyMaterialError:
        return
    assert isinstance(out, bytearray) and len(out) == 32


def test_load_secret_refuses_extreme_scrypt_parameters() -> None:
    """A crafted key file must not make the loader allocate gigabytes or spin for minutes."""
    for log2n, r, p in [(22, 32, 16), (22, 8, 1), (20, 32, 1), (20, 8, 16)]:
        blob = bytes([1, log2n, r, p]) + bytes(76)
        text = f"-----BEGIN SEALCAM ENCRYPTED IDENTITY-----\n{base64.b64encode(blob).decode()}\n" \
               "-----END SEALCAM ENCRYPTED IDENTITY-----\n"
        with pytest.raises(KeyMaterialError, match="scrypt"):
            secretfile.load_secret("IDENTITY", text, b"pw", "crafted")


@settings(FUZZ, max_examples=EXAMPLES)
@given(text=st.one_of(
    st.text(max_size=120),
    st.builds(lambda p, t: p + t, st.sampled_from([encoding.RECIPIENT_PREFIX, encoding.SIGNER_PREFIX]),
              st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567=AZ019 \n", max_size=70)),
    st.builds(lambda pub, cut: encoding.encode_public(encoding.RECIPIENT_PREFIX, pub)[:cut],
              st.binary(min_size=32, max_size=32), st.integers(0, 70)),
), prefix=st.sampled_from([encoding.RECIPIENT_PREFIX, encoding.SIGNER_PREFIX]))
def test_decode_public_raises_only_key_material_error(text: str, prefix: str) -> None:
    try:
        pub = encoding.decode_public(prefix, text)
    except KeyMaterialError:
        return
    assert len(pub) == 32 and encoding.encode_public(prefix, pub) == text.strip()
