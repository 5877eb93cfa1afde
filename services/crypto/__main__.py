"""`python -m services.crypto [--config FILE] [--segment-seconds N]`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from sealcam.bus.client import connect
from sealcam.config import default_config, load_config
from sealcam.keys.hub import KIND as HUB_KIND
from sealcam.keys.hub import HubKey
from sealcam.keys.recipients import load_recipient
from sealcam.keys.secretfile import load_secret

from .modes import ModeSettings
from .service import CameraSpec, CryptoService

log = logging.getLogger("sealcam.crypto")


def load_hub(hub_cfg) -> HubKey:  # noqa: ANN001 - sealcam.config.models.Hub
    """The hub key, once, with its passphrase from the configured file (or env); nothing of it is logged."""
    pw = hub_cfg.passphrase_file.reveal_bytes() if hub_cfg.passphrase_file else None
    ref = hub_cfg.signing_key_file
    if ref.path is not None:
        return HubKey.load(ref.path, pw)
    return HubKey(load_secret(HUB_KIND, ref.reveal(), pw, str(ref)))


def bus_url(url: str | None, data_dir: Path, name: str) -> str:
    """Configured URL, else the embedded bus `sealcam up` starts under data_dir/buses."""
    return url or os.environ.get(f"SEALCAM_{name.upper()}_URL") or f"unix://{data_dir / 'buses' / name}.sock"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.crypto", description=__doc__)
    ap.add_argument("--config", help="config file (default: the built-in default under $SEALCAM_DATA_DIR)")
    ap.add_argument("--segment-seconds", type=float, default=None,
                    help="override recording.segment_seconds (tests and demos; 1..3600)")
    ap.add_argument("--consumer", default="crypto-1", help="consumer name in the crypto group (stable across "
                    "restarts, so pending entries are found again)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.config:
        config = load_config(args.config)
    else:
        config = default_config(os.environ.get("SEALCAM_DATA_DIR", "./sealcam-data"))
    sec = config.section_for("crypto")
    data_dir = Path(config.data_dir)
    seg = args.segment_seconds if args.segment_seconds is not None else sec["recording"].segment_seconds
    if not 1 <= seg <= 3600:
        ap.error("--segment-seconds must be within 1..3600")
    hub = load_hub(sec["hub"])
    per_cam = sec["camera_recording"]
    cameras = [CameraSpec(cam, [load_recipient(r) for r in recips], ModeSettings.from_recording(per_cam[cam]),
                          None if args.segment_seconds is not None else per_cam[cam].segment_seconds)
               for cam, recips in sec["recipients"].items()]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    svc = CryptoService(cameras=cameras, signer=hub, handle_for=hub.camera_handle,
                        plain=connect(bus_url(sec["plain_bus"], data_dir, "plain"), name="crypto",
                                      auth=sec["plain_auth"]),
                        sealed=connect(bus_url(sec["sealed_bus"], data_dir, "sealed"), name="crypto",
                                       auth=sec["sealed_auth"]),
                        data_dir=data_dir, segment_seconds=seg, consumer=args.consumer, stop=stop)
    log.info("crypto: sealing %s camera(s), segments of %s s, modes %s", len(cameras), seg,
             ", ".join(f"{c.camera}={c.mode.mode}" for c in cameras))
    try:
        svc.run()
    finally:
        hub.close()
    log.info("crypto: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
