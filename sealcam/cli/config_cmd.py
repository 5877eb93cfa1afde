"""`sealcam config check FILE`: validate a config; summarise cameras, backends and secret references.

Secrets are never read: only whether each referenced file exists or variable is set is shown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ConfigError, load_config
from ..config.models import Config
from . import exitcodes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check the service config", description="Work with the sealcam config file.")
    cs = p.add_subparsers(dest="config_cmd", required=True, metavar="COMMAND")
    c = cs.add_parser("check", help="validate a config file and summarise it",
                      description="Validate FILE; list each problem as FILE:LINE:COL: key.path: message (exit 2), "
                      "or summarise cameras, storage and secret references (exit 0). Secrets are not read.")
    c.add_argument("file", metavar="FILE", help="the YAML config file")
    c.set_defaults(func=run)


def _target(b: object) -> str:
    t = getattr(b, "type", "?")
    if t == "local":
        return str(b.path)  # type: ignore[attr-defined]
    if t in ("sftp", "ftp"):
        scheme = "ftps" if t == "ftp" and b.tls else t  # type: ignore[attr-defined]
        return f"{scheme}://{b.user}@{b.host}:{b.port}/{str(b.path).lstrip('/')}"  # type: ignore[attr-defined]
    if t == "s3":
        lock = f", object lock {b.object_lock.mode} {b.object_lock.days}d" if b.object_lock else ""  # type: ignore[attr-defined]
        where = b.endpoint_url or b.region  # type: ignore[attr-defined]
        return f"s3://{b.bucket}/{b.prefix} ({where}{lock})"  # type: ignore[attr-defined]
    return "?"


def summary(config: Config) -> list[str]:
    lines = [f"cameras ({len(config.cameras)}):"]
    for cam in config.cameras:
        ins = ", ".join(f"{i.url.split(':', 1)[0]} [{'+'.join(i.roles)}]" for i in cam.inputs)
        lines.append(f"  {cam.id}: {ins}; {len(cam.recipients or [])} recipient(s)")
    rec = config.recording
    lines.append(f"recording: {rec.mode}, segments {rec.segment_seconds}s, fragments {rec.fragment_seconds}s")
    lines.append(f"storage ({len(config.storage)}):")
    lines += [f"  {b.name} ({b.type}): {_target(b)}" for b in config.storage]
    buses = config.buses
    lines.append(f"buses: plain {buses.plain_url or 'embedded'}, sealed {buses.sealed_url or 'embedded'}")
    refs = config.secret_refs()
    lines.append(f"secrets ({len(refs)}, not read):")
    for path, ref in refs:
        state = ("set" if ref.available() else "NOT SET") if ref.kind == "env" else (
            "exists" if ref.available() else "MISSING")
        lines.append(f"  {path}: {ref.ref} ({state})")
    files = sorted({r for cam in config.cameras for r in cam.recipients or [] if not r.startswith("sc1")})
    if files:
        lines.append("recipient files:")
        lines += [f"  {f} ({'exists' if Path(f).is_file() else 'MISSING'})" for f in files]
    return lines


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        n = len(exc.problems)
        print(f"{args.file}: {n} problem{'s' if n != 1 else ''}; config not valid", file=sys.stderr)
        return exitcodes.USAGE
    print(f"{args.file}: config is valid")
    for line in summary(config):
        print(line)
    missing = [r for _, r in config.secret_refs() if not r.available()]
    if missing:
        print(f"warning: {len(missing)} secret reference(s) cannot be read yet", file=sys.stderr)
    return exitcodes.OK
