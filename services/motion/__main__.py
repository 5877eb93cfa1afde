"""`python -m services.motion [--config FILE] [--camera ID] [--instance NAME]`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger("sealcam.motion")


def default_plain_url(data_dir: Path) -> str:
    """The embedded plain bus `sealcam up` starts when buses.plain_url is null."""
    return f"unix://{Path(data_dir) / 'buses' / 'plain.sock'}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m services.motion", description="sealcam motion: video from the "
                                 "plain bus -> motion/object/tamper events and thumbnails")
    ap.add_argument("--config", help="config file (default: the built-in demo config under $SEALCAM_DATA_DIR "
                    "or ./sealcam-data)")
    ap.add_argument("--camera", action="append", help="watch only this camera id (repeatable)")
    ap.add_argument("--instance", default=None, help="instance name in the heartbeat key (default: host name)")
    ap.add_argument("--log-level", default=os.environ.get("SEALCAM_LOG_LEVEL", "INFO"))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    from sealcam.config.loader import ConfigError, default_config, load_config
    from sealcam.config.sections import section_for

    try:
        if args.config:
            config = load_config(args.config)
        else:
            config = default_config(os.environ.get("SEALCAM_DATA_DIR") or "./sealcam-data")
    except ConfigError as exc:
        print(f"motion: {exc}", file=sys.stderr)
        return 2
    try:
        import cv2  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as exc:
        print(f"motion: {exc.name} is not installed (pip install 'sealcam[motion]')", file=sys.stderr)
        return 2
    from sealcam.bus import names
    from sealcam.bus.client import connect
    from sealcam.motion.pipeline import ObjectsUnavailable, load_object_detector

    from .service import CameraWorker, MotionService

    section = section_for(config, "motion")
    settings: dict = {cam: s for cam, s in section["motion"].items() if s.enabled}
    if args.camera:
        unknown = sorted(set(args.camera) - set(section["motion"]))
        if unknown:
            print(f"motion: unknown camera id(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        settings = {c: s for c, s in settings.items() if c in args.camera}
    url = section["plain_bus"] or default_plain_url(config.data_dir)
    instance = names.instance_name(args.instance)
    bus = connect(url, name="motion", auth=section["plain_auth"])
    workers = []
    for cam, s in settings.items():
        try:
            objects = load_object_detector(section.get("objects", {}).get(cam))
        except ObjectsUnavailable as exc:
            print(f"motion: camera {cam}: {exc}", file=sys.stderr)
            return 2
        workers.append(CameraWorker(cam, s, bus, detect_only=section["detect_only"][cam],
                                    consumer=f"motion-{instance}", objects=objects))
    service = MotionService(bus, workers, instance=instance)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("motion: %s received, stopping", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("motion: %d camera(s) <- %s", len(workers), url)
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
