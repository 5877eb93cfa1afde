#!/usr/bin/env python3
"""Write the buses' Redis/Valkey aclfiles from sealcam/bus/acl.py (the one definition of who may do what).

    scripts/gen_acl.py                      deploy/redis/{plain,sealed}.acl.example (placeholder hashes)
    scripts/gen_acl.py --passwords DIR      real aclfiles from DIR/<bus>-<service>.pass (missing ones are
                                            generated, mode 0600) into --out (default: DIR)

DIR is what `buses.acl_dir` names in the config; each service reads only its own files there.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sealcam.bus import acl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: No password hashes to this (64 zeros is nobody's SHA-256): the example loads, and nobody can log in with it.
PLACEHOLDER = "0" * 64


def write(path: Path, text: str, private: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passwords", type=Path, help="folder of <bus>-<service>.pass files (buses.acl_dir)")
    ap.add_argument("--out", type=Path, help="where the aclfiles go (default: deploy/redis, or --passwords)")
    args = ap.parse_args(argv)
    if args.passwords is None:
        out = args.out or ROOT / "deploy" / "redis"
        for bus in acl.BUSES:
            text = acl.render_acl_hashes(bus, dict.fromkeys(acl.users(bus), PLACEHOLDER))
            write(out / f"{bus}.acl.example", text, private=False)
        return 0
    passwords = acl.ensure_passwords(args.passwords)
    out = args.out or args.passwords
    for bus in acl.BUSES:
        write(out / f"{bus}.acl", acl.render_acl(bus, passwords[bus]), private=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
