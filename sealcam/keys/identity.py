"""Identities: what unwraps a segment's data key on the owner's machine.

- X25519Identity: a sealcam identity file (`sealcam keys owner-init`), optionally passphrase-protected.
- PgpSecretIdentity: an ASCII-armoured OpenPGP private key file, unwrapped with pgpy.
- GpgIdentity: the real `gpg` and its agent (smartcards and YubiKeys included); the key never leaves gpg.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from ..format.constants import DATA_KEY_LEN, StanzaType
from ..format.errors import KeyMaterialError
from ..format.records import Stanza
from .encoding import RECIPIENT_PREFIX, encode_public, key_id
from .recipients import HPKE_SUITE, X25519Recipient, load_pgp_key, pgp_key_id
from .secretfile import dump_secret, is_encrypted, load_secret

KIND = "IDENTITY"
GPG_TIMEOUT_S = 120  # a pinentry or a smartcard touch may take a while


class Identity(Protocol):
    label: str

    def unwrap(self, stanza: Stanza, info: bytes) -> bytearray | None:
        """The data key if this identity can unwrap `stanza`, else None."""
        ...


class X25519Identity:
    def __init__(self, secret: bytearray) -> None:
        self._secret = secret
        self._key = X25519PrivateKey.from_private_bytes(bytes(secret))
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(self.public)
        self.label = encode_public(RECIPIENT_PREFIX, self.public)

    @classmethod
    def generate(cls) -> X25519Identity:
        raw = X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(bytearray(raw))

    @property
    def recipient(self) -> X25519Recipient:
        return X25519Recipient(self.public)

    def dump(self, passphrase: bytes | None) -> str:
        return dump_secret(KIND, bytes(self._secret), passphrase, [
            "sealcam owner identity. Secret: whoever holds this file can watch your footage.",
            f"recipient: {self.label}",
        ])

    def unwrap(self, stanza: Stanza, info: bytes) -> bytearray | None:
        if stanza.type is not StanzaType.HPKE_X25519 or stanza.key_id != self.key_id:
            return None
        try:
            key = bytearray(HPKE_SUITE.decrypt(stanza.body, self._key, info=info))
        except (InvalidTag, ValueError):  # not ours, or a damaged stanza
            return None
        return key if len(key) == DATA_KEY_LEN else None


class PgpSecretIdentity:
    def __init__(self, key, source: str, passphrase: bytes | None) -> None:  # noqa: ANN001 - pgpy.PGPKey
        self._key = key
        self._passphrase = passphrase
        self.key_ids = {pgp_key_id(key)} | {bytes.fromhex(k[-16:]) for k in key.subkeys}
        self.label = f"openpgp:{key.fingerprint.replace(' ', '')}"
        self._source = source

    def unwrap(self, stanza: Stanza, info: bytes) -> bytearray | None:
        if stanza.type is not StanzaType.OPENPGP or stanza.key_id not in self.key_ids:
            return None
        import pgpy

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                msg = pgpy.PGPMessage.from_blob(stanza.body)
                if self._key.is_protected:
                    if self._passphrase is None:
                        raise KeyMaterialError(f"{self._source}: OpenPGP key is protected; give --passphrase-file")
                    with self._key.unlock(self._passphrase.decode()):
                        out = self._key.decrypt(msg).message
                else:
                    out = self._key.decrypt(msg).message
            except (ValueError, pgpy.errors.PGPError, NotImplementedError):
                return None
        data = bytearray(out if isinstance(out, (bytes, bytearray)) else out.encode())
        return data if len(data) == DATA_KEY_LEN else None


class GpgIdentity:
    """Delegates OpenPGP stanzas to `gpg --decrypt` (so gpg-agent, pinentry and smartcards apply)."""

    label = "gpg"

    def __init__(self, gpg: str | None = None, homedir: str | None = None) -> None:
        self._gpg = gpg or shutil.which("gpg") or ""
        if not self._gpg:
            raise KeyMaterialError("--gpg given but no `gpg` program found on PATH (install gnupg)")
        self._home = homedir
        self.errors: list[str] = []

    def unwrap(self, stanza: Stanza, info: bytes) -> bytearray | None:
        if stanza.type is not StanzaType.OPENPGP:
            return None
        cmd = [self._gpg, "--quiet", "--decrypt"]
        if self._home:
            cmd[1:1] = ["--homedir", self._home]
        env = dict(os.environ)
        try:
            proc = subprocess.run(cmd, input=stanza.body, capture_output=True, timeout=GPG_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            self.errors.append(f"gpg did not answer within {GPG_TIMEOUT_S} s")
            return None
        if proc.returncode != 0 or len(proc.stdout) != DATA_KEY_LEN:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            self.errors.append(f"gpg: {tail[0]}")
            return None
        return bytearray(proc.stdout)


def load_identity(path: str | Path, passphrase: Callable[[], bytes | None]) -> Identity:
    """Load an identity file. `passphrase` is called only when the file is protected."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyMaterialError(f"cannot read identity {path}: {exc}") from exc
    if "-----BEGIN PGP PRIVATE KEY BLOCK-----" in text:
        key = load_pgp_key(text, str(path))
        return PgpSecretIdentity(key, str(path), passphrase() if key.is_protected else None)
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" in text:
        raise KeyMaterialError(f"{path}: a public OpenPGP key cannot decrypt; use its private key or --gpg")
    pw = passphrase() if is_encrypted(text) else None
    return X25519Identity(load_secret(KIND, text, pw, str(path)))
