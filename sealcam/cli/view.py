"""`sealcam view`: the owner's viewer (a local web app) over the storage the uploader writes; `sealcam export`:
a verified clip and its report from the command line.

The identity's passphrase is asked once, at start; data keys live in memory only. Nothing decrypted is written
to disk except an export the owner asks for.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import exitcodes
from .common import CliError, load_identities, load_signer_pin, parse_time


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", required=True, metavar="URL",
                   help="a folder, file://, sftp://USER@HOST[:PORT]/PATH?known_hosts=F&key=F, "
                   "ftp[s]://USER@HOST/PATH?password_file=F, s3://BUCKET/PREFIX?endpoint=URL&access_key_file=F&"
                   "secret_key_file=F (see docs/guide/viewer.md)")
    p.add_argument("--identity", action="append", default=[], metavar="FILE",
                   help="owner identity file (keys owner-init) or OpenPGP private key; repeatable")
    p.add_argument("--passphrase-file", metavar="F", help="passphrase of the identity (else asked once)")
    p.add_argument("--gpg", action="store_true", help="unwrap OpenPGP stanzas with gpg and its agent")
    p.add_argument("--gpg-homedir", metavar="D", help="gpg home directory")
    p.add_argument("--signer", metavar="SPEC", help="pin the hub key: an scsig1... string or a file holding one")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="watch sealed footage in a browser (a local web app)",
                       description="Serve a timeline and player for the footage on STORAGE at http://127.0.0.1:PORT "
                       "(read-only; decrypts in memory, on demand).")
    _common(p)
    p.add_argument("--port", type=int, default=8765, help="TCP port (default %(default)s; 0 picks a free one)")
    p.add_argument("--bind", default="127.0.0.1", metavar="HOST",
                   help="address to listen on (default 127.0.0.1; anything else exposes decrypted footage)")
    p.add_argument("--no-full-verify", action="store_true",
                   help="check closed segments from their signed tails only (playback still checks each record)")
    p.set_defaults(func=run_view)
    e = sub.add_parser("export", help="export a verified clip (MP4) and its verification report",
                       description="Write clip.mp4, the sealed segments it comes from (sealed/), report.json and "
                       "report.html into OUT. A third party re-checks them with `sealcam verify --signer ... sealed/`.")
    _common(e)
    e.add_argument("--camera", required=True, metavar="HANDLE", help="camera handle (hex, or a unique prefix)")
    e.add_argument("--since", required=True, metavar="TIME", help="start (ISO 8601 with zone, or epoch seconds)")
    e.add_argument("--until", required=True, metavar="TIME", help="end")
    e.add_argument("-o", "--output", required=True, metavar="OUT", help="directory to create")
    e.set_defaults(func=run_export)


def _archive(args: argparse.Namespace):  # noqa: ANN202 - Archive
    from ..storage import StorageError, open_storage
    from ..viewer.archive import Archive

    if not args.identity and not args.gpg:
        raise CliError("give --identity FILE or --gpg", exitcodes.USAGE)
    pin = load_signer_pin(args.signer)
    identities = load_identities(args.identity, args.passphrase_file, args.gpg, args.gpg_homedir)
    try:
        reader = open_storage(args.storage)
    except StorageError as exc:
        raise CliError(str(exc), exitcodes.USAGE, where="--storage") from None
    return Archive(reader, identities, signer=pin)


def run_view(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from ..storage import StorageError
    from ..viewer.app import Viewer, create_app

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    archive = _archive(args)
    hosts = {"127.0.0.1", "localhost", "[::1]", args.bind if ":" not in args.bind else f"[{args.bind}]"}
    viewer = Viewer(archive, hosts=hosts, deep_verify=not args.no_full_verify)
    try:
        viewer.start()
    except StorageError as exc:
        raise CliError(str(exc), exitcodes.IO, where="--storage") from None
    server = make_server(args.bind, args.port, create_app(viewer), threaded=True)
    host = args.bind if ":" not in args.bind else f"[{args.bind}]"
    print(f"sealcam view: {len(archive.cameras)} camera(s) on {archive.reader.url}", file=sys.stderr)
    print(f"open http://{host}:{server.server_port}/?token={viewer.token}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop.set()
        server.server_close()
        archive.close()
    return exitcodes.OK


def run_export(args: argparse.Namespace) -> int:
    from ..viewer.export import ExportError, export_clip

    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    out = Path(args.output)
    if out.exists():
        raise CliError("output directory exists; choose a new one", exitcodes.USAGE, where=str(out))
    archive = _archive(args)
    try:
        archive.refresh()
        matches = [h for h in archive.cameras if h and h.hex().startswith(args.camera.lower())]
        if len(matches) != 1:
            raise CliError(f"{len(matches)} cameras match {args.camera!r}", exitcodes.USAGE,
                           hint="cameras: " + ", ".join(h.hex() for h in archive.cameras if h))
        archive.deep_verify()
        try:
            files = export_clip(archive, matches[0], since, until)
        except ExportError as exc:
            raise CliError(str(exc), exitcodes.PROBLEMS) from None
        for name, data in files.items():
            p = out / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    finally:
        archive.close()
    print(f"exported {len(files['clip.mp4'])} bytes of video and {len(files) - 3} sealed segment(s) to {out}",
          file=sys.stderr)
    return exitcodes.OK
