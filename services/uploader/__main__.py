"""`python -m services.uploader [--config FILE] [--data-dir DIR] [--sealed-url URL] [--for SECONDS]`"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.uploader", description="sealcam uploader")
    p.add_argument("--config", help="config file (default: the built-in default config under --data-dir)")
    p.add_argument("--data-dir", default="./sealcam-data", help="data dir for the default config")
    p.add_argument("--sealed-url", help="override the sealed bus URL")
    p.add_argument("--for", dest="duration", type=float, help="run this many seconds, then stop")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s uploader %(levelname)s %(message)s")
    from sealcam.config import ConfigError
    from sealcam.config.loader import default_config, load_config

    from .service import Uploader

    try:
        config = load_config(a.config) if a.config else default_config(a.data_dir)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    up = Uploader.from_config(config, sealed_url=a.sealed_url)
    up.install_signals()
    up.run(a.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
