"""Chunk AEAD and plaintext framing. The only place chunk keys are used.

Framed plaintext: kind(1) || payload || zero padding || pad_len(u32 BE). Encrypted as a whole, so neither
the payload kind nor the amount of padding is visible without the key.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from .constants import DATA_KEY_LEN, TAG_LEN, PayloadKind, Suite
from .digests import chunk_nonce
from .errors import DecryptError

FRAME_OVERHEAD = 1 + 4


def fresh_data_key() -> bytearray:
    """32 bytes from the OS CSPRNG, read straight into a bytearray that can be wiped later."""
    key = bytearray(DATA_KEY_LEN)
    try:
        with open("/dev/urandom", "rb", buffering=0) as f:
            if f.readinto(key) != DATA_KEY_LEN:
                raise OSError("short read from /dev/urandom")
    except FileNotFoundError:  # not Linux/BSD/macOS: fall back (leaves an immutable copy behind)
        key[:] = os.urandom(DATA_KEY_LEN)
    return key


_ZEROS = memoryview(bytes(1 << 16))


def wipe(buf: bytearray | memoryview | None) -> None:
    """Overwrite a writable buffer with zeros, in place and without a temporary the size of the buffer
    (`buf[:] = bytes(len(buf))` costs a fresh allocation, its page faults and a slow copy: ~1 ms per MiB)."""
    if buf is None:
        return
    mv = memoryview(buf).cast("B")
    step = len(_ZEROS)
    for i in range(0, len(mv), step):
        part = mv[i : i + step]
        part[:] = _ZEROS[: len(part)]


def new_aead(suite: Suite, key: bytearray) -> AESGCM | ChaCha20Poly1305:
    return AESGCM(key) if suite is Suite.AES_256_GCM else ChaCha20Poly1305(key)


def frame(kind: PayloadKind, payload: bytes | memoryview, pad: int) -> bytearray:
    out = bytearray(1 + len(payload) + pad + 4)
    out[0] = kind
    out[1 : 1 + len(payload)] = payload
    struct.pack_into(">I", out, len(out) - 4, pad)
    return out


def frame_into(buf: bytearray, kind: PayloadKind, payload: bytes | memoryview, pad: int) -> memoryview:
    """Like frame(), into the front of a reusable scratch buffer; returns a view of exactly the framed bytes."""
    n = len(payload)
    out = memoryview(buf)[: 1 + n + pad + 4]
    out[0] = kind
    out[1 : 1 + n] = payload
    wipe(out[1 + n : 1 + n + pad])
    struct.pack_into(">I", out, 1 + n + pad, pad)
    return out


def seal_into(aead, index: int, framed: bytes | bytearray, ad: bytes, out: memoryview) -> None:  # noqa: ANN001
    """Encrypt `framed` into `out` (len(framed) + TAG_LEN bytes)."""
    aead.encrypt_into(chunk_nonce(index), framed, ad, out)


def open_chunk(aead, index: int, ciphertext: memoryview, ad: bytes, *, offset: int,  # noqa: ANN001
               scratch: bytearray | None = None) -> tuple[PayloadKind, memoryview]:
    """Authenticate and decrypt one chunk; return (kind, payload view). Raises DecryptError.

    With `scratch`, the plaintext goes into that (reused) buffer when it is large enough: the returned view
    is then valid only until the next call with the same scratch."""
    n = len(ciphertext) - TAG_LEN
    if n < FRAME_OVERHEAD:
        raise DecryptError("chunk too short to hold a framed plaintext", offset=offset, index=index)
    buf = memoryview(scratch)[:n] if scratch is not None and len(scratch) >= n else bytearray(n)
    try:
        aead.decrypt_into(chunk_nonce(index), ciphertext, ad, buf)
    except InvalidTag:
        raise DecryptError("chunk failed authentication (altered, moved, re-timed or wrong key)",
                           offset=offset, index=index) from None
    (pad,) = struct.unpack_from(">I", buf, n - 4)
    if pad > n - FRAME_OVERHEAD:
        raise DecryptError(f"padding length {pad} exceeds the chunk", offset=offset, index=index)
    end = n - 4 - pad
    if pad and bytes(buf[end : n - 4]).count(0) != pad:
        raise DecryptError("padding is not all zero", offset=offset, index=index)
    try:
        kind = PayloadKind(buf[0])
    except ValueError:
        raise DecryptError(f"unknown payload kind {buf[0]}", offset=offset, index=index) from None
    return kind, memoryview(buf)[1:end]
