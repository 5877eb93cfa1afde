"""First run of `sealcam up` with no config: keys and a config file under the data dir.

    DATA/keys/owner.identity   the owner's X25519 identity (0600, no passphrase: it is a local demo; move it
                               off the hub for real use, see the README)
    DATA/keys/owner.recipient  its sc1... recipient string (public)
    DATA/keys/hub.key          the hub's signing key, encrypted with
    DATA/keys/hub.pass         a generated passphrase (0600)
    DATA/config.yml            default_config(DATA) plus hub.passphrase_file; later runs reuse it

Nothing is ever overwritten: existing files are kept (write_new_file refuses to replace a key).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import yaml

from ..config import Config, default_config
from ..keys.hub import HubKey
from ..keys.identity import X25519Identity
from ..keys.secretfile import write_new_file

log = logging.getLogger("sealcam.up")

CONFIG_NAME = "config.yml"


def key_paths(data_dir: Path) -> dict[str, Path]:
    k = data_dir / "keys"
    return {"identity": k / "owner.identity", "recipient": k / "owner.recipient", "hub": k / "hub.key",
            "hub_pass": k / "hub.pass"}


def ensure_keys(data_dir: Path) -> list[Path]:
    """Create whichever of the default keys are missing; returns the files created."""
    p = key_paths(data_dir)
    p["identity"].parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    made: list[Path] = []
    if not p["identity"].exists():
        ident = X25519Identity.generate()
        write_new_file(p["identity"], ident.dump(None))
        made.append(p["identity"])
        if p["recipient"].exists():
            p["recipient"].unlink()  # it belonged to an identity that is gone; a stale one would seal to nobody
    if not p["recipient"].exists():
        from ..keys.identity import load_identity

        ident = load_identity(p["identity"], lambda: None)
        write_new_file(p["recipient"], ident.label + "\n")
        os.chmod(p["recipient"], 0o644)
        made.append(p["recipient"])
    if not p["hub"].exists():
        if not p["hub_pass"].exists():
            write_new_file(p["hub_pass"], secrets.token_urlsafe(32) + "\n")
            made.append(p["hub_pass"])
        from ..keys.secretfile import read_passphrase_file

        hub = HubKey.generate()
        try:
            write_new_file(p["hub"], hub.dump(read_passphrase_file(p["hub_pass"])))
        finally:
            hub.close()
        made.append(p["hub"])
    return made


def config_to_yaml(config: Config, header: str = "") -> str:
    data = config.model_dump(mode="json", exclude_none=True)
    return header + yaml.safe_dump(data, sort_keys=False)


def write_config(path: Path, config: Config, header: str = "") -> None:
    """Write a config YAML atomically, mode 0600 (it holds no secrets, but names where they are)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(config_to_yaml(config, header))
    os.replace(tmp, path)


def first_run(data_dir: Path) -> Path:
    """Keys + DATA/config.yml if missing; returns the config path."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = ensure_keys(data_dir)
    for m in made:
        log.info("created %s", m)
    cfg_path = data_dir / CONFIG_NAME
    if not cfg_path.exists():
        cfg = default_config(data_dir)
        cfg.hub.passphrase_file = _secret_ref(key_paths(data_dir)["hub_pass"])
        write_config(cfg_path, cfg, "# sealcam default config, written by the first `sealcam up`; edit freely.\n"
                     "# One synthetic camera, a local folder as the remote, embedded buses.\n")
        log.info("created %s", cfg_path)
    return cfg_path


def _secret_ref(path: Path):  # noqa: ANN202 - SecretRef
    from ..config import SecretRef

    return SecretRef.file(path)
