"""`sealcam` entry point: argument parsing, dispatch, and the one place errors become messages and exit codes.

Expected errors (SealcamError, OSError, CliError) print `sealcam: error: WHAT (WHERE)` and, where it
helps, `hint: ...`; never a traceback and never key material. Anything else is a bug: it prints the
traceback and exits with exitcodes.INTERNAL.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from . import exitcodes
from .common import CliError, error_line, key_error


def build_parser() -> argparse.ArgumentParser:
    from . import config_cmd, decrypt, inspect, keys, motion, seal, up, verify, view

    p = argparse.ArgumentParser(
        prog="sealcam", description="Privacy-first security camera recording: sealed (encrypted + signed) footage.",
        epilog="Exit codes: 0 ok, 1 verification failed / problems found, 2 usage or config error, 3 key error, "
        "4 I/O error. See docs/ref/cli.md.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in (keys, seal, inspect, verify, decrypt, config_cmd, up, view, motion):
        mod.add_parser(sub)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sealcam")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def run(argv: list[str] | None = None) -> int:
    from ..format.decrypt import VerificationFailed
    from ..format.errors import FormatError, KeyMaterialError, SealcamError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        error_line(exc.message, exc.where, exc.hint)
        return exc.code
    except VerificationFailed as exc:
        for p in exc.problems:
            print(f"{p.kind}: {p.message} ({p.where()})", file=sys.stderr)
        error_line("verification failed")
        return exitcodes.PROBLEMS
    except KeyMaterialError as exc:
        err = key_error(exc)
        error_line(err.message, err.where, err.hint)
        return exitcodes.KEY
    except FormatError as exc:
        error_line(str(exc))
        return exitcodes.PROBLEMS
    except SealcamError as exc:
        error_line(str(exc))
        return exitcodes.PROBLEMS
    except BrokenPipeError:
        _stdout_gone()
        return exitcodes.IO
    except OSError as exc:
        error_line(exc.strerror or str(exc), exc.filename if exc.filename is not None else None)
        return exitcodes.IO
    except KeyboardInterrupt:
        print(file=sys.stderr)
        error_line("interrupted")
        return exitcodes.INTERRUPTED
    except Exception:  # noqa: BLE001 - a bug: show everything
        traceback.print_exc()
        error_line("internal error (a bug in sealcam); please report it with the traceback above")
        return exitcodes.INTERNAL


def _stdout_gone() -> None:
    """The reader went away (`| head`): stop quietly, and keep Python from complaining at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> None:
    code = run(argv)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
        code = code or exitcodes.IO
    sys.exit(code)


if __name__ == "__main__":
    main()
