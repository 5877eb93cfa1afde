#!/usr/bin/env python3
"""Regenerate sealcam's container test vectors: one directory per case, plus shared keys.

    .venv/bin/python scripts/make_vectors.py [--out tests/vectors]

Old case directories (and keys/) under the output directory are deleted first. Keys and data keys are
fresh each run, so ciphertexts change; payloads, capture times and expectations do not. The format of a
case is described in the README.md this script writes next to the cases.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from vectors import sets, tamper, valid  # noqa: E402, F401 - importing registers the cases
from vectors.kit import REGISTRY, Case, Keys  # noqa: E402
from vectors.readme import README  # noqa: E402


def clear(out: Path) -> None:
    """Delete what an earlier run made; refuse to touch a directory that is not a vector folder."""
    if not out.exists():
        return
    for p in out.iterdir():
        if p.is_dir() and (p.name == "keys" or (p / "case.json").exists() or p.name in REGISTRY):
            shutil.rmtree(p)
        elif p.is_dir():
            raise SystemExit(f"make_vectors: {p} is not a case directory; refusing to clear {out}")


def build(out: Path) -> list[str]:
    clear(out)
    out.mkdir(parents=True, exist_ok=True)
    kit = Keys(out)
    for name, make in REGISTRY.items():
        make(Case(out, name, make.__doc__ or name, kit))
    (out / "README.md").write_text(README)
    return list(REGISTRY)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "vectors", help="output directory")
    args = ap.parse_args(argv)
    names = build(args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"make_vectors: {len(names)} cases, {size / 1024:.0f} KiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
