"""`python -m services.recorder [--config FILE] [--camera ID] [--instance NAME]`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from sealcam.bus import names
from sealcam.bus.client import connect
from sealcam.config.loader import ConfigError, default_config, load_config
from sealcam.config.sections import section_for

from .backoff import Backoff
from .service import STALL_S, CameraWorker, Recorder

log = logging.getLogger("sealcam.recorder")


def default_plain_url(data_dir: Path) -> str:
    """The embedded plain bus `sealcam up` starts when buses.plain_url is null."""
    return f"unix://{Path(data_dir) / 'buses' / 'plain.sock'}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m services.recorder", description="sealcam recorder: cameras -> "
                                 "fMP4 fragments on the plain bus")
    ap.add_argument("--config", help="config file (default: the built-in demo config under $SEALCAM_DATA_DIR "
                    "or ./sealcam-data)")
    ap.add_argument("--camera", action="append", help="record only this camera id (repeatable)")
    ap.add_argument("--instance", default=None, help="instance name in the heartbeat key (default: host name)")
    ap.add_argument("--stall-seconds", type=float, default=STALL_S, help="kill ffmpeg after this long without "
                    "video (default %(default)s)")
    ap.add_argument("--log-level", default=os.environ.get("SEALCAM_LOG_LEVEL", "INFO"))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.config:
            config = load_config(args.config)
        else:
            config = default_config(os.environ.get("SEALCAM_DATA_DIR") or "./sealcam-data")
    except ConfigError as exc:
        print(f"recorder: {exc}", file=sys.stderr)
        return 2
    section = section_for(config, "recorder")
    cameras: dict = section["cameras"]
    if args.camera:
        unknown = sorted(set(args.camera) - set(cameras))
        if unknown:
            print(f"recorder: unknown camera id(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        cameras = {c: cameras[c] for c in args.camera}
    url = section["plain_bus"] or default_plain_url(config.data_dir)
    bus = connect(url, name="recorder", auth=section["plain_auth"])
    fragment_seconds = section["recording"].fragment_seconds
    workers = []
    for cam_id, inputs in cameras.items():
        rec = next(i for i in inputs if "record" in i.roles)
        det = next((i for i in inputs if "detect" in i.roles and "record" not in i.roles), None)
        for inp, role in ((rec, "record"), (det, "detect")):
            if inp is None:
                continue
            ref = inp.password_file
            workers.append(CameraWorker(cam_id, inp.url, bus,
                                        password=(ref.reveal if ref is not None else lambda: None),
                                        fragment_seconds=fragment_seconds, stall_s=args.stall_seconds,
                                        backoff=Backoff(), role=role))
    recorder = Recorder(bus, workers, instance=names.instance_name(args.instance))

    def on_signal(signum: int, _frame: object) -> None:
        log.info("recorder: %s received, stopping", signal.Signals(signum).name)
        recorder.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("recorder: %d camera(s) -> %s", len(workers), url)
    return recorder.run()


if __name__ == "__main__":
    sys.exit(main())
