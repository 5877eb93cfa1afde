"""Text forms of public keys: short, typo-checked strings the owner can paste, pin or scan as a QR code.

    sc1<base32(pub32 || check4)>      an owner's X25519 recipient (encrypt to it)
    scsig1<base32(pub32 || check4)>   a hub's Ed25519 signer (pin it to verify)

base32 is RFC 4648, lowercase, without padding; check4 = SHA-256(prefix || pub)[:4].
"""

from __future__ import annotations

import base64
import hashlib

from ..format.errors import KeyMaterialError

RECIPIENT_PREFIX = "sc1"
SIGNER_PREFIX = "scsig1"


def _check(prefix: str, pub: bytes) -> bytes:
    return hashlib.sha256(prefix.encode() + pub).digest()[:4]


def encode_public(prefix: str, pub: bytes) -> str:
    if len(pub) != 32:
        raise ValueError("public key must be 32 bytes")
    return prefix + base64.b32encode(pub + _check(prefix, pub)).decode().lower().rstrip("=")


def decode_public(prefix: str, text: str) -> bytes:
    text = text.strip()
    what = "recipient" if prefix == RECIPIENT_PREFIX else "signer key"
    if not text.startswith(prefix):
        raise KeyMaterialError(f"not a sealcam {what}: expected a string starting with {prefix!r}")
    raw = text[len(prefix) :].upper()
    try:
        data = base64.b32decode(raw + "=" * (-len(raw) % 8))
    except ValueError as exc:
        raise KeyMaterialError(f"sealcam {what} is not valid base32") from exc
    if len(data) != 36:
        raise KeyMaterialError(f"sealcam {what} has the wrong length (a character missing or extra?)")
    pub, check = data[:32], data[32:]
    if check != _check(prefix, pub):
        raise KeyMaterialError(f"sealcam {what} checksum does not match (a typo?)")
    if encode_public(prefix, pub) != prefix + text[len(prefix) :].lower():
        # The last base32 character carries 2 unused bits: a typo there would otherwise pass unnoticed.
        raise KeyMaterialError(f"sealcam {what} checksum does not match (a typo in the last character?)")
    return pub


def key_id(pub: bytes) -> bytes:
    """8-byte id of a native public key, written in clear beside its wrapped data key."""
    from ..format.constants import LABEL_KEY_ID

    return hashlib.sha256(LABEL_KEY_ID + pub).digest()[:8]
