"""The hub's Ed25519 signing key: signs every segment, and derives opaque per-camera handles."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from ..format.constants import HANDLE_LEN, LABEL_CAMERA_HANDLE
from ..format.errors import KeyMaterialError
from .encoding import SIGNER_PREFIX, decode_public, encode_public
from .secretfile import dump_secret, load_secret

KIND = "HUB SIGNING KEY"


class HubKey:
    """A loaded hub signing key. The seed stays in a bytearray so `close()` can overwrite it."""

    def __init__(self, seed: bytearray) -> None:
        if len(seed) != 32:
            raise KeyMaterialError("hub signing key must be 32 bytes")
        self._seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(seed))
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> HubKey:
        raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(bytearray(raw))

    @classmethod
    def load(cls, path: str | Path, passphrase: bytes | None) -> HubKey:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyMaterialError(f"cannot read hub signing key {path}: {exc}") from exc
        return cls(load_secret(KIND, text, passphrase, str(path)))

    def dump(self, passphrase: bytes | None) -> str:
        return dump_secret(KIND, bytes(self._seed), passphrase, [
            "sealcam hub signing key. Keep it on the hub; it signs every sealed segment.",
            f"signer: {self.signer_string}",
        ])

    @property
    def signer_string(self) -> str:
        return encode_public(SIGNER_PREFIX, self.public)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def camera_handle(self, camera_id: str) -> bytes:
        """Opaque, stable handle for a camera: nobody without this key can link it to the camera's name."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=HANDLE_LEN, salt=None,
                    info=LABEL_CAMERA_HANDLE + camera_id.encode())
        return hkdf.derive(bytes(self._seed))

    def close(self) -> None:
        for i in range(len(self._seed)):
            self._seed[i] = 0


def load_signer(spec: str) -> bytes:
    """A signer pin: an `scsig1...` string, or a file holding one (a hub key file's comment line works)."""
    spec = spec.strip()
    if spec.startswith(SIGNER_PREFIX):
        return decode_public(SIGNER_PREFIX, spec)
    try:
        text = Path(spec).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyMaterialError(
            f"--signer {spec!r} is neither an {SIGNER_PREFIX}... string nor a readable file"
        ) from exc
    for word in text.replace(":", " ").split():
        if word.startswith(SIGNER_PREFIX):
            return decode_public(SIGNER_PREFIX, word)
    raise KeyMaterialError(f"{spec}: no {SIGNER_PREFIX}... signer string in this file")
