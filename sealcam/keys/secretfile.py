"""Secret key files: a 32-byte private key in an armoured text file, optionally passphrase-protected.

    -----BEGIN SEALCAM <KIND>-----             plain:     base64(0x00 || key32)
    -----BEGIN SEALCAM ENCRYPTED <KIND>-----   encrypted: base64(0x01 || log2N || r || p || salt16 ||
                                                          nonce12 || AES-256-GCM(scrypt(pass), key32, ad))
The AD is the KIND string, so an identity cannot be loaded as a hub key. Standard primitives only
(scrypt, RFC 7914; AES-256-GCM). Files are written with mode 0600 and never overwritten.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..format.errors import KeyMaterialError

SCRYPT_LOG2_N = 15  # 32 MiB with r=8: ~0.1 s on a laptop, ~0.5 s on a Pi 4
SCRYPT_R = 8
SCRYPT_P = 1
_BLOCK = re.compile(r"-----BEGIN SEALCAM (ENCRYPTED )?([A-Z ]+)-----\s*([A-Za-z0-9+/=\s]+?)-----END SEALCAM")


SCRYPT_MAX_MEMORY = 1 << 30  # bytes (128 * r * N); the default parameters use 32 MiB
SCRYPT_MAX_WORK = 1 << 24  # N * r * p; the default parameters use 2^18


def _kdf(passphrase: bytes, salt: bytes, log2n: int, r: int, p: int) -> bytes:
    # The parameters come from the (untrusted) file: bound memory and work before deriving, so a crafted
    # file cannot make the loader allocate 16 GiB or spin for minutes.
    if not (10 <= log2n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        raise KeyMaterialError("key file has out-of-range scrypt parameters")
    if 128 * r << log2n > SCRYPT_MAX_MEMORY or (r * p) << log2n > SCRYPT_MAX_WORK:
        raise KeyMaterialError("key file asks for more scrypt memory or work than sealcam allows")
    try:
        return Scrypt(salt=salt, length=32, n=1 << log2n, r=r, p=p).derive(passphrase)
    except MemoryError:
        raise KeyMaterialError("not enough memory for this key file's scrypt parameters") from None


def dump_secret(kind: str, key: bytes, passphrase: bytes | None, comments: list[str]) -> str:
    head = "".join(f"# {c}\n" for c in comments)
    if passphrase is None:
        blob, label = b"\x00" + key, kind
    else:
        salt, nonce = os.urandom(16), os.urandom(12)
        wrap = _kdf(passphrase, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
        ct = AESGCM(wrap).encrypt(nonce, key, kind.encode())
        blob = bytes((1, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)) + salt + nonce + ct
        label = "ENCRYPTED " + kind
    b64 = base64.encodebytes(blob).decode()
    return f"{head}-----BEGIN SEALCAM {label}-----\n{b64}-----END SEALCAM {label}-----\n"


def is_encrypted(text: str) -> bool:
    m = _BLOCK.search(text)
    return bool(m and m.group(1))


def load_secret(kind: str, text: str, passphrase: bytes | None, where: str) -> bytearray:
    m = _BLOCK.search(text)
    if not m or m.group(2).strip() != kind:
        raise KeyMaterialError(f"{where}: not a sealcam {kind.lower()} file")
    try:
        blob = base64.b64decode("".join(m.group(3).split()), validate=True)
    except ValueError as exc:
        raise KeyMaterialError(f"{where}: damaged base64 in key file") from exc
    if m.group(1) is None:
        if len(blob) != 33 or blob[0] != 0:
            raise KeyMaterialError(f"{where}: damaged key file")
        return bytearray(blob[1:])
    if len(blob) != 4 + 16 + 12 + 48 or blob[0] != 1:
        raise KeyMaterialError(f"{where}: damaged encrypted key file")
    if passphrase is None:
        raise KeyMaterialError(f"{where}: key file is passphrase-protected and no passphrase was given")
    wrap = _kdf(passphrase, blob[4:20], blob[1], blob[2], blob[3])
    try:
        return bytearray(AESGCM(wrap).decrypt(blob[20:32], blob[32:], kind.encode()))
    except InvalidTag:
        raise KeyMaterialError(f"{where}: wrong passphrase (or the key file was altered)") from None


def write_new_file(path: Path, text: str) -> None:
    """Create `path` with mode 0600; refuse to overwrite an existing key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyMaterialError(f"{path}: already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)


def read_passphrase_file(path: str | os.PathLike[str]) -> bytes:
    """A passphrase from a file: its first line, without the newline (secrets never come from YAML)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read passphrase file {path}: {exc.strerror}") from exc
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise KeyMaterialError(f"passphrase file {path} is empty")
    return line
