"""`python -m services.watchdog --config FILE [options]`: run the watchdog until SIGTERM/SIGINT.

Exit codes: 0 after SIGTERM/SIGINT, 2 for a config or usage error (not worth restarting), 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from sealcam.config import ConfigError, SecretError, load_config

from .http import DEFAULT_PORT
from .notify import Notifier
from .rules import GB, Thresholds, Timing
from .service import Settings, Watchdog, sealed_bus_url

log = logging.getLogger("sealcam.watchdog")


def _port(text: str) -> int | None:
    if text.lower() in ("off", "none", "-1"):
        return None
    n = int(text)
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError("port must be 0..65535 (0: any free port) or 'off'")
    return n


def build_parser() -> argparse.ArgumentParser:
    d, t = Thresholds(), Timing()
    p = argparse.ArgumentParser(prog="python -m services.watchdog", description="sealcam watchdog: alerts on "
                                "stalled sealed output, upload lag, spool growth and low disk.")
    p.add_argument("--config", required=True, metavar="FILE", help="sealcam config (reads its watchdog section)")
    p.add_argument("--http-host", default="127.0.0.1", help="address for /healthz and /metrics (default %(default)s)")
    p.add_argument("--http-port", type=_port, default=os.environ.get("SEALCAM_WATCHDOG_PORT", str(DEFAULT_PORT)),
                   help="port for /healthz and /metrics; 0 any free port, 'off' none (default %(default)s, "
                   "or $SEALCAM_WATCHDOG_PORT)")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between rounds")
    p.add_argument("--stall-factor", type=float, default=d.stall_factor, help="stall after FACTOR x fragment "
                   "cadence + grace (default %(default)s)")
    p.add_argument("--stall-grace", type=float, default=d.stall_grace_s, metavar="S")
    p.add_argument("--startup-grace", type=float, default=d.startup_grace_s, metavar="S")
    p.add_argument("--health-timeout", type=float, default=d.health_timeout_s, metavar="S")
    p.add_argument("--upload-lag-max", type=float, default=d.upload_lag_max_s, metavar="S")
    p.add_argument("--upload-backlog-max", type=int, default=d.upload_backlog_max, metavar="N")
    p.add_argument("--spool-max-gb", type=float, default=d.spool_max_bytes / GB, metavar="GB")
    p.add_argument("--fire-after", type=float, default=t.fire_after_s, metavar="S")
    p.add_argument("--hold-down", type=float, default=t.hold_down_s, metavar="S")
    p.add_argument("--renotify", type=float, default=t.renotify_s, metavar="S")
    p.add_argument("--uptime-interval", type=float, default=60.0, metavar="S")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("SEALCAM_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        section = config.section_for("watchdog")
        notifier = Notifier.from_alerts(section["alerts"])
    except (ConfigError, SecretError, ValueError) as exc:
        log.error("config: %s", exc)
        return 2
    rec = section["recording"]
    settings = Settings(
        thresholds=Thresholds(fragment_seconds=rec.fragment_seconds, stall_factor=args.stall_factor,
                              stall_grace_s=args.stall_grace, startup_grace_s=args.startup_grace,
                              health_timeout_s=args.health_timeout, upload_lag_max_s=args.upload_lag_max,
                              upload_backlog_max=args.upload_backlog_max,
                              spool_max_bytes=int(args.spool_max_gb * GB),
                              disk_min_free_bytes=int(section["alerts"].disk_min_free_gb * GB)),
        timing=Timing(fire_after_s=args.fire_after, hold_down_s=args.hold_down, renotify_s=args.renotify),
        interval_s=args.interval, uptime_interval_s=args.uptime_interval, http_host=args.http_host,
        http_port=args.http_port)
    wd = Watchdog(sealed_bus_url(section), section["camera_ids"], section["data_dir"], notifier, settings,
                  bus_auth=section["sealed_auth"])
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: wd.stop())
    try:
        wd.start_http()
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", args.http_host, args.http_port, exc.strerror or exc)
        return 1
    wd.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
