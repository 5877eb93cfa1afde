"""Recipients: who a segment's data key is wrapped to. Native X25519 (HPKE, RFC 9180) or OpenPGP (pgpy)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ..format.constants import StanzaType
from ..format.errors import KeyMaterialError
from ..format.records import Stanza
from .encoding import RECIPIENT_PREFIX, decode_public, encode_public, key_id

#: The one HPKE suite v1 uses for native recipients.
HPKE_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


class Recipient(Protocol):
    key_id: bytes
    label: str

    def wrap(self, data_key: bytes | bytearray, info: bytes) -> Stanza: ...


@dataclass(frozen=True)
class X25519Recipient:
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.public)

    @property
    def label(self) -> str:
        return encode_public(RECIPIENT_PREFIX, self.public)

    def wrap(self, data_key: bytes | bytearray, info: bytes) -> Stanza:
        pub = X25519PublicKey.from_public_bytes(self.public)
        return Stanza(StanzaType.HPKE_X25519, self.key_id, HPKE_SUITE.encrypt(data_key, pub, info=info))


def _pgpy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgpy 0.6 touches algorithms cryptography calls decrepit
        import pgpy

    return pgpy


def pgp_key_id(key) -> bytes:  # noqa: ANN001 - pgpy.PGPKey
    return bytes.fromhex(key.fingerprint.keyid)


class PgpRecipient:
    """An OpenPGP public key (ASCII-armoured). The data key travels as an OpenPGP message, so gpg and a
    YubiKey behind gpg-agent can unwrap it."""

    def __init__(self, key, source: str) -> None:  # noqa: ANN001 - pgpy.PGPKey
        if not key.is_public:
            raise KeyMaterialError(f"{source}: this is a private OpenPGP key; give the public key as recipient")
        self._key = key
        self.key_id = pgp_key_id(key)
        self.label = f"openpgp:{key.fingerprint.replace(' ', '')}"

    def wrap(self, data_key: bytes | bytearray, info: bytes) -> Stanza:
        pgpy = _pgpy()
        from pgpy.constants import CompressionAlgorithm, SymmetricKeyAlgorithm

        msg = pgpy.PGPMessage.new(bytes(data_key), compression=CompressionAlgorithm.Uncompressed, file=False)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                enc = self._key.encrypt(msg, cipher=SymmetricKeyAlgorithm.AES256)
        except (pgpy.errors.PGPError, NotImplementedError) as exc:
            raise KeyMaterialError(f"cannot encrypt to OpenPGP key {self.label}: {exc}") from exc
        return Stanza(StanzaType.OPENPGP, self.key_id, bytes(enc.__bytes__()))


def load_pgp_key(text: str, source: str):  # noqa: ANN201 - pgpy.PGPKey
    pgpy = _pgpy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key, _ = pgpy.PGPKey.from_blob(text)
    except (ValueError, pgpy.errors.PGPError, NotImplementedError) as exc:
        raise KeyMaterialError(f"{source}: not a usable OpenPGP key: {exc}") from exc
    return key


def load_recipient(spec: str) -> Recipient:
    """`sc1...`, or a file holding an `sc1...` string or an ASCII-armoured OpenPGP public key."""
    spec = spec.strip()
    if spec.startswith(RECIPIENT_PREFIX):
        return X25519Recipient(decode_public(RECIPIENT_PREFIX, spec))
    path = Path(spec)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyMaterialError(
            f"recipient {spec!r} is neither an {RECIPIENT_PREFIX}... string nor a readable file"
        ) from exc
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" in text:
        return PgpRecipient(load_pgp_key(text, spec), spec)
    if "-----BEGIN PGP PRIVATE KEY BLOCK-----" in text:
        raise KeyMaterialError(f"{spec}: this is a private OpenPGP key; give the public key as recipient")
    for word in text.replace(":", " ").split():
        if word.startswith(RECIPIENT_PREFIX):
            return X25519Recipient(decode_public(RECIPIENT_PREFIX, word))
    raise KeyMaterialError(f"{spec}: no {RECIPIENT_PREFIX}... recipient or OpenPGP public key in this file")
