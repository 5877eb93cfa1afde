"""Hashes, the hash chain, signed messages and associated data of container v1 (SHA-256 throughout)."""

from __future__ import annotations

import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .constants import (
    LABEL_CHAIN,
    LABEL_CHECKPOINT,
    LABEL_CHUNK_AD,
    LABEL_HEADER,
    LABEL_HPKE_INFO,
    LABEL_SEGMENT,
    NONCE_LEN,
)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def header_digest(header_record: bytes) -> bytes:
    """Digest of the whole HEADER record (record header + body). Binds every chunk to its segment."""
    return sha256(LABEL_HEADER + header_record)


def chain_start(hdr_digest: bytes) -> bytes:
    return sha256(LABEL_CHAIN + hdr_digest)


def chain_next(chain: bytes, record_digest: bytes) -> bytes:
    return sha256(chain + record_digest)


def segment_message(trailer_signed_fields: bytes) -> bytes:
    """What the hub signs to close a segment."""
    return LABEL_SEGMENT + trailer_signed_fields


def segment_digest(trailer_signed_fields: bytes) -> bytes:
    """The link the next segment of the same camera stores as `prev_link`."""
    return sha256(segment_message(trailer_signed_fields))


def checkpoint_message(hdr_digest: bytes, count: int, chain: bytes) -> bytes:
    return LABEL_CHECKPOINT + hdr_digest + struct.pack(">I", count) + chain


def chunk_nonce(index: int) -> bytes:
    """Counter nonce. Safe because every segment has its own fresh random key."""
    return bytes(NONCE_LEN - 8) + struct.pack(">Q", index)


def chunk_ad(hdr_digest: bytes, rtype: int, flags: int, clear_fields: bytes) -> bytes:
    return LABEL_CHUNK_AD + hdr_digest + bytes((rtype, flags)) + clear_fields


def hpke_info(camera_handle: bytes, segment_id: bytes, seq: int) -> bytes:
    return LABEL_HPKE_INFO + camera_handle + segment_id + struct.pack(">Q", seq)


def verify_signature(public: bytes, signature: bytes, message: bytes) -> bool:
    """Ed25519 verification; False for a bad signature or an invalid public key."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
