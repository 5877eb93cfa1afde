"""OpenPGP recipients end to end with the real gpg and gpg-agent: seal to an exported public key with the
CLI, decrypt with `sealcam decrypt --gpg` (the private key never leaves gpg).

Each test gets a private GNUPGHOME under /tmp (short, so the agent's socket path fits) and kills its agent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import Keys, keys, sealcam  # noqa: F401 - `keys` is a fixture

from sealcam.cli import exitcodes

UID = "Test <t@example.org>"


def _gpg() -> str:
    path = shutil.which("gpg")
    if path is None:
        pytest.fail("gpg not found on PATH: run `bash scripts/setup.sh --test` (it installs gnupg)")
    return path


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_gpg(), "--homedir", str(home), "--batch", *args], capture_output=True, timeout=120,
                          check=True)


@pytest.fixture
def gnupghome() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="scgpg", dir="/tmp"))
    home.chmod(0o700)
    try:
        yield home
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def _make_key(home: Path, algo: str) -> Path:
    """A passphrase-less key made by gpg itself; returns its exported, armoured public key.

    `future-default` makes an ed25519 primary key with a cv25519 encryption subkey. An explicit algorithm
    with usage `default` makes a sign/certify-only primary key and no subkey, so an encryption subkey is
    added, as `gpg --full-gen-key` would."""
    if algo == "future-default":
        _run(home, "--passphrase", "", "--quick-gen-key", UID, algo, "default", "never")
    else:
        _run(home, "--passphrase", "", "--quick-gen-key", UID, algo, "sign,cert", "never")
        fpr = _fingerprint(home)
        _run(home, "--passphrase", "", "--quick-add-key", fpr, algo, "encr", "never")
    pub = home / "pub.asc"
    pub.write_bytes(_run(home, "--armor", "--export", "t@example.org").stdout)
    return pub


def _fingerprint(home: Path) -> str:
    out = _run(home, "--with-colons", "--list-keys", "t@example.org").stdout.decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.mark.parametrize("algo", ["rsa2048", "future-default"])  # future-default: ed25519 + cv25519 subkey
def test_seal_to_gpg_key_decrypt_with_gpg_agent(keys: Keys, gnupghome: Path, tmp_path: Path, algo: str) -> None:  # noqa: F811
    pub = _make_key(gnupghome, algo)
    data = os.urandom(70_000)
    (tmp_path / "in.bin").write_bytes(data)
    r = sealcam("seal", "--camera", "cam", "--recipient", pub, "--recipient", keys.recipient, "--signing-key",
                keys.hub, "--passphrase-file", keys.passphrase, "in.bin", "g.seg", cwd=tmp_path)
    assert r.rc == 0, r.err
    assert "openpgp:" in r.text

    r = sealcam("inspect", "g.seg", cwd=tmp_path)
    assert "openpgp" in r.text and "hpke-x25519" in r.text

    r = sealcam("decrypt", "--gpg", "--gpg-homedir", gnupghome, "--signer", keys.signer, "g.seg", cwd=tmp_path)
    assert r.rc == 0, r.err
    assert r.out == data
    # the same through $GNUPGHOME, as a user with a default gpg setup would run it
    r = sealcam("decrypt", "--gpg", "--signer", keys.signer, "-o", "out.bin", "g.seg", cwd=tmp_path,
                env={"GNUPGHOME": str(gnupghome)})
    assert r.rc == 0, r.err
    assert (tmp_path / "out.bin").read_bytes() == data

    # the exported private key works without gpg too (pgpy)
    sec = tmp_path / "sec.asc"
    sec.write_bytes(_run(gnupghome, "--armor", "--pinentry-mode", "loopback", "--passphrase", "",
                         "--export-secret-keys", "t@example.org").stdout)
    r = sealcam("decrypt", "--identity", sec, "--signer", keys.signer, "g.seg", cwd=tmp_path)
    assert r.rc == 0, r.err
    assert r.out == data


def test_gpg_without_the_key_is_a_key_error(keys: Keys, gnupghome: Path, tmp_path: Path) -> None:  # noqa: F811
    pub = _make_key(gnupghome, "rsa2048")
    (tmp_path / "in.bin").write_bytes(b"only for the gpg key")
    r = sealcam("seal", "--camera", "cam", "--recipient", pub, "--signing-key", keys.hub, "--passphrase-file",
                keys.passphrase, "in.bin", "g.seg", cwd=tmp_path)
    assert r.rc == 0, r.err
    empty = Path(tempfile.mkdtemp(prefix="scgpg", dir="/tmp"))
    empty.chmod(0o700)
    try:
        r = sealcam("decrypt", "--gpg", "--gpg-homedir", empty, "g.seg", cwd=tmp_path)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(empty), "--kill", "gpg-agent"], capture_output=True, timeout=30)
        shutil.rmtree(empty, ignore_errors=True)
    assert r.rc == exitcodes.KEY
    assert "none of your identities can decrypt this segment (g.seg)" in r.err
    assert "hint: gpg:" in r.err  # gpg's own reason is passed on
    # a public key is not an identity
    r = sealcam("decrypt", "--identity", pub, "g.seg", cwd=tmp_path)
    assert r.rc == exitcodes.KEY and "public OpenPGP key cannot decrypt" in r.err


def test_sign_only_key_is_refused_with_a_hint(gnupghome: Path, tmp_path: Path, keys: Keys) -> None:  # noqa: F811
    _run(gnupghome, "--passphrase", "", "--quick-gen-key", UID, "rsa2048", "default", "never")  # no subkey
    pub = tmp_path / "pub.asc"
    pub.write_bytes(_run(gnupghome, "--armor", "--export", "t@example.org").stdout)
    (tmp_path / "in").write_bytes(b"x")
    r = sealcam("seal", "--camera", "cam", "--recipient", pub, "--signing-key", keys.hub, "--passphrase-file",
                keys.passphrase, "in", "x.seg", cwd=tmp_path)
    assert r.rc == exitcodes.KEY
    assert "cannot encrypt to OpenPGP key" in r.err and "hint: " in r.err and "--quick-add-key" in r.err
    assert not (tmp_path / "x.seg").exists()


def test_private_key_as_recipient_is_refused(gnupghome: Path, tmp_path: Path, keys: Keys) -> None:  # noqa: F811
    _make_key(gnupghome, "rsa2048")
    sec = tmp_path / "sec.asc"
    sec.write_bytes(_run(gnupghome, "--armor", "--pinentry-mode", "loopback", "--passphrase", "",
                         "--export-secret-keys", "t@example.org").stdout)
    (tmp_path / "in").write_bytes(b"x")
    r = sealcam("seal", "--camera", "cam", "--recipient", sec, "--signing-key", keys.hub, "--passphrase-file",
                keys.passphrase, "in", "x.seg", cwd=tmp_path)
    assert r.rc == exitcodes.KEY and "private OpenPGP key" in r.err
