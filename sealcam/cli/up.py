"""`sealcam up [--config FILE] [--for DURATION] [--data-dir DIR]`: run everything on this machine.

With no config: first run creates keys and DATA/config.yml (one synthetic camera, a local folder as the
remote, embedded buses); later runs reuse DATA/config.yml. Stops cleanly on Ctrl-C / SIGTERM or after --for.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from pathlib import Path

from . import exitcodes
from .common import CliError

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}


def parse_duration(text: str) -> float:
    """`30s`, `2m`, `1.5h`, `500ms`, or plain seconds."""
    m = _DURATION.match(text.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30s, 2m, 1h")
    return float(m.group(1)) * _UNIT[m.group(2)]


def default_data_dir() -> Path:
    if env := os.environ.get("SEALCAM_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sealcam"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "up", help="run the buses and every service on this machine",
        description="Start both buses (embedded unless the config names them) and every service (crypto, "
        "uploader, watchdog, recorder) as supervised processes with logs under DATA/logs. With no --config, the "
        "first run creates keys and DATA/config.yml (a synthetic camera, DATA/remote as the remote).")
    p.add_argument("--config", metavar="FILE", help="config file (default: DATA/config.yml, created if missing)")
    p.add_argument("--for", dest="duration", type=parse_duration, metavar="DURATION",
                   help="stop after this long (e.g. 30s, 2m); default: until Ctrl-C / SIGTERM")
    p.add_argument("--data-dir", metavar="DIR", type=Path,
                   help="state folder (default: the config's data_dir; with no config $SEALCAM_DATA_DIR or "
                   "~/.local/share/sealcam)")
    p.add_argument("--grace", type=parse_duration, default=10.0, metavar="DURATION",
                   help="how long each service gets to stop after SIGTERM before SIGKILL (default 10s)")
    p.add_argument("--sandbox", action="store_true",
                   help="run each service in a bubblewrap sandbox built from its trust zone: crypto (and motion) "
                   "with no network, each service seeing only its own bus sockets, secrets and state "
                   "(needs bwrap; see docs/guide/sandbox.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_config
    from ..up.firstrun import CONFIG_NAME, first_run
    from ..up.supervisor import Supervisor, UpError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    try:
        if args.config:
            config = load_config(args.config)
            if args.data_dir:
                config = config.model_copy(update={"data_dir": args.data_dir.expanduser().resolve()})
        else:
            data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
            path = data_dir / CONFIG_NAME
            if not path.exists():
                path = first_run(data_dir)
            config = load_config(path)
    except ConfigError as exc:
        raise CliError(f"invalid config:\n{exc}", exitcodes.USAGE) from None
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    sup = Supervisor(config, data_dir, grace_s=args.grace)
    if getattr(args, "sandbox", False):
        from ..up.sandbox import Sandbox, SandboxError

        try:
            sup.sandbox = Sandbox.checked(data_dir)
        except SandboxError as exc:
            raise CliError(str(exc), exitcodes.USAGE) from None

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("sealcam.up").info("%s: stopping", signal.Signals(signum).name)
        sup.stop_event.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            sup.start()
        except UpError as exc:
            raise CliError(str(exc), exitcodes.USAGE) from None
        return sup.run(args.duration)
    finally:
        sup.stop()
        for s, h in old.items():
            signal.signal(s, h)
