"""Keys: text encodings, key files, identities, recipients, hub key."""

from __future__ import annotations

import os
import stat

import pytest

from sealcam.format.errors import KeyMaterialError
from sealcam.keys.encoding import RECIPIENT_PREFIX, SIGNER_PREFIX, decode_public, encode_public
from sealcam.keys.hub import HubKey, load_signer
from sealcam.keys.identity import X25519Identity, load_identity
from sealcam.keys.recipients import X25519Recipient, load_recipient
from sealcam.keys.secretfile import dump_secret, load_secret, write_new_file


def test_public_string_roundtrip_and_typo_detection() -> None:
    pub = os.urandom(32)
    s = encode_public(RECIPIENT_PREFIX, pub)
    assert s.startswith("sc1") and s == s.lower()
    assert decode_public(RECIPIENT_PREFIX, s) == pub
    typo = s[:10] + ("a" if s[10] != "a" else "b") + s[11:]
    with pytest.raises(KeyMaterialError, match="checksum"):
        decode_public(RECIPIENT_PREFIX, typo)
    with pytest.raises(KeyMaterialError, match="wrong length"):
        decode_public(RECIPIENT_PREFIX, s[:-2])
    with pytest.raises(KeyMaterialError, match="starting with 'scsig1'"):
        decode_public(SIGNER_PREFIX, s)


def test_secret_file_plain_and_encrypted() -> None:
    key = os.urandom(32)
    plain = dump_secret("IDENTITY", key, None, ["a comment"])
    assert bytes(load_secret("IDENTITY", plain, None, "f")) == key
    enc = dump_secret("IDENTITY", key, b"correct horse", [])
    assert key.hex() not in enc
    assert bytes(load_secret("IDENTITY", enc, b"correct horse", "f")) == key
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        load_secret("IDENTITY", enc, b"wrong", "f")
    with pytest.raises(KeyMaterialError, match="no passphrase was given"):
        load_secret("IDENTITY", enc, None, "f")
    with pytest.raises(KeyMaterialError, match="not a sealcam hub signing key"):
        load_secret("HUB SIGNING KEY", enc, b"correct horse", "f")


def test_identity_file_mode_no_overwrite_and_reload(tmp_path) -> None:  # noqa: ANN001
    ident = X25519Identity.generate()
    path = tmp_path / "me.identity"
    write_new_file(path, ident.dump(b"pw"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(KeyMaterialError, match="refusing to overwrite"):
        write_new_file(path, "x")
    asked = []
    loaded = load_identity(path, lambda: asked.append(1) or b"pw")
    assert asked == [1] and loaded.public == ident.public
    # The recipient string in the comment line is a valid recipient spec (the file can be shared... but
    # should not be: the public string alone is enough).
    assert load_recipient(ident.label).public == ident.public


def test_recipient_from_file_and_bad_specs(tmp_path) -> None:  # noqa: ANN001
    ident = X25519Identity.generate()
    f = tmp_path / "owner.pub"
    f.write_text(f"# my recipient\n{ident.label}\n")
    r = load_recipient(str(f))
    assert isinstance(r, X25519Recipient) and r.public == ident.public
    with pytest.raises(KeyMaterialError, match="neither an sc1"):
        load_recipient(str(tmp_path / "missing"))
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(KeyMaterialError, match="no sc1"):
        load_recipient(str(tmp_path / "junk"))


def test_hub_key_roundtrip_signer_pin_and_handles(tmp_path) -> None:  # noqa: ANN001
    hub = HubKey.generate()
    path = tmp_path / "hub.key"
    write_new_file(path, hub.dump(b"hub-pass"))
    again = HubKey.load(path, b"hub-pass")
    assert again.public == hub.public
    assert load_signer(hub.signer_string) == hub.public
    assert load_signer(str(path)) == hub.public  # the comment line carries the signer string
    h1, h2 = hub.camera_handle("front"), hub.camera_handle("back")
    assert len(h1) == 16 and h1 != h2 and again.camera_handle("front") == h1
    assert HubKey.generate().camera_handle("front") != h1  # unlinkable without the hub key
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        HubKey.load(path, b"nope")
