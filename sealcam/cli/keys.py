"""`sealcam keys owner-init | hub-init | show`: make and show the owner's identity and the hub's signing key."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..format.errors import KeyMaterialError
from . import exitcodes
from .common import (
    CliError,
    key_error,
    load_hub_key,
    load_identities,
    prompt_new_passphrase,
    read_key_text,
    read_passphrase,
    signer_string,
    stdin_is_tty,
    warn,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="make and show keys", description="Make and show sealcam keys.")
    ks = p.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    o = ks.add_parser("owner-init", help="make the owner's identity (decrypts footage)",
                      description="Make the owner's X25519 identity. Prints its public recipient string "
                      "(sc1...) and a QR code of it; give that string to the hub.")
    o.add_argument("-o", "--output", default="./sealcam-owner.identity", metavar="FILE",
                   help="identity file to create (default: %(default)s)")
    _passphrase_options(o)
    o.add_argument("--no-qr", action="store_true", help="do not print the QR code")
    o.set_defaults(func=owner_init)

    h = ks.add_parser("hub-init", help="make the hub's signing key (signs every segment)",
                      description="Make the hub's Ed25519 signing key, passphrase-protected by default. Prints "
                      "the signer string (scsig1...) and writes it to FILE.signer; pin it when verifying.")
    h.add_argument("-o", "--output", default="./sealcam-hub.key", metavar="FILE",
                   help="key file to create (default: %(default)s)")
    _passphrase_options(h)
    h.set_defaults(func=hub_init)

    s = ks.add_parser("show", help="print the public string of an identity or hub key",
                      description="Print the public string of a key file: sc1... for an identity, scsig1... "
                      "for a hub key. Never prints secret material.")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--passphrase-file", metavar="F", help="passphrase (first line of F) if the key is protected")
    s.set_defaults(func=show)


def _passphrase_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--passphrase-file", metavar="F", help="protect the key with the first line of F")
    g.add_argument("--no-passphrase", action="store_true", help="store the key unprotected")


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if os.path.lexists(path):
            raise CliError("already exists; refusing to overwrite a key", exitcodes.USAGE, where=str(path),
                           hint="choose another file name with -o, or move the old file away first")
    parent = paths[0].parent
    if not parent.is_dir():
        raise CliError("directory does not exist", exitcodes.IO, where=str(parent))


def _write_key(path: Path, text: str) -> None:
    from ..keys.secretfile import write_new_file

    try:
        write_new_file(path, text)
    except KeyMaterialError as exc:
        raise key_error(exc, str(path)) from None


def _new_passphrase(args: argparse.Namespace, what: str, required: bool) -> bytes | None:
    if args.passphrase_file:
        return read_passphrase(args.passphrase_file)
    if args.no_passphrase:
        return None
    if stdin_is_tty():
        return prompt_new_passphrase(what)
    if required:
        raise CliError("no passphrase for the new hub key and no terminal to ask for one", exitcodes.USAGE,
                       hint="give --passphrase-file FILE, or --no-passphrase to store it unprotected "
                       "(only where the disk itself is protected)")
    warn(f"no terminal to ask for a passphrase: the {what} is stored WITHOUT one "
         "(give --passphrase-file F to protect it, or --no-passphrase to silence this warning)")
    return None


def owner_init(args: argparse.Namespace) -> int:
    from ..keys.identity import X25519Identity

    path = Path(args.output)
    _refuse_existing(path)
    pw = _new_passphrase(args, "owner identity", required=False)
    ident = X25519Identity.generate()
    _write_key(path, ident.dump(pw))
    rcpt = ident.label
    print(f"Wrote owner identity {path} (mode 0600, {'passphrase-protected' if pw else 'NOT passphrase-protected'}).")
    print("Keep it secret and back it up: without it nobody, you included, can watch the footage.\n")
    print("Recipient (public, safe to share):")
    print(f"  {rcpt}\n")
    if not args.no_qr:
        _print_qr(rcpt)
    print("Use it on the hub:")
    print(f"  sealcam seal --recipient {rcpt} ...")
    print(f"Decrypt later with: sealcam decrypt --identity {path} ...")
    return exitcodes.OK


def _print_qr(text: str) -> None:
    import segno

    qr = segno.make(text, error="m")
    enc = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    qr.terminal(compact=enc in ("utf8", "utf16", "utf32"))
    print()


def hub_init(args: argparse.Namespace) -> int:
    from ..keys.hub import HubKey

    path = Path(args.output)
    signer_path = path.with_name(path.name + ".signer")
    _refuse_existing(path, signer_path)
    pw = _new_passphrase(args, "hub signing key", required=True)
    hub = HubKey.generate()
    try:
        _write_key(path, hub.dump(pw))
        sig = hub.signer_string
    finally:
        hub.close()
    try:
        fd = os.open(signer_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(sig + "\n")
    except OSError as exc:
        raise CliError(f"cannot write the signer file: {exc.strerror}", exitcodes.IO, where=str(signer_path)
                       ) from None
    print(f"Wrote hub signing key {path} (mode 0600, {'passphrase-protected' if pw else 'NOT passphrase-protected'}).")
    print(f"Wrote its public signer string to {signer_path}.\n")
    print("Signer (public): pin this when verifying:")
    print(f"  sealcam verify --signer {sig} ...\n")
    print(f"Seal with it: sealcam seal --signing-key {path} ...")
    return exitcodes.OK


def show(args: argparse.Namespace) -> int:
    path = args.file
    text = read_key_text(path)
    if "HUB SIGNING KEY-----" in text:
        hub = load_hub_key(path, args.passphrase_file)
        try:
            print(hub.signer_string)
        finally:
            hub.close()
        return exitcodes.OK
    if ("SEALCAM" in text and "IDENTITY-----" in text) or "PGP PRIVATE KEY BLOCK" in text:
        (ident,) = load_identities([path], args.passphrase_file, False, None)
        print(ident.label)
        kid = getattr(ident, "key_id", None) or next(iter(sorted(getattr(ident, "key_ids", ()))), None)
        if kid:
            print(f"key id: {kid.hex()}", file=sys.stderr)
        return exitcodes.OK
    # A public file: a .signer file, a recipient file or an OpenPGP public key.
    from ..keys.hub import load_signer
    from ..keys.recipients import load_recipient

    try:
        if "scsig1" in text:
            print(signer_string(load_signer(path)))
            return exitcodes.OK
        rcpt = load_recipient(path)
    except KeyMaterialError as exc:
        raise key_error(exc, path) from None
    print(rcpt.label)
    print(f"key id: {rcpt.key_id.hex()}", file=sys.stderr)
    return exitcodes.OK
