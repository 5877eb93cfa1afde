"""`sealcam motion scan VIDEOFILE [--config FILE] [--camera ID] [--json]`: run motion detection over a file.

The same decoder command, detector, tamper monitor and event rules as the motion service (the library sealcam/motion),
with a camera's settings from a config (or the defaults); prints each event's interval in seconds from the
file's start, its kind, best label and score. Needs the motion extra (numpy, OpenCV) and ffmpeg. This command
runs the service's analysis code on the owner's machine: it reads a local file, touches no bus or key.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import exitcodes
from .common import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("motion", help="motion detection tools", description="Motion detection tools.")
    ms = p.add_subparsers(dest="motion_cmd", required=True, metavar="COMMAND")
    s = ms.add_parser("scan", help="find motion, object and tamper events in a video file",
                      description="Decode VIDEOFILE as the motion service would and print its events (seconds "
                      "from the file's start). Exit 0 whether or not events were found.")
    s.add_argument("file", metavar="VIDEOFILE", help="any video file ffmpeg reads (mp4, mkv, fMP4...)")
    s.add_argument("--config", metavar="FILE", help="take motion (and objects) settings from this config")
    s.add_argument("--camera", metavar="ID", help="whose settings (default: the config's first camera)")
    s.add_argument("--json", action="store_true", help="print one JSON document")
    s.set_defaults(func=run)


def _settings(args: argparse.Namespace):  # noqa: ANN202 - (MotionSettings, objects config or None)
    from ..config.motion import MotionSettings, effective_motion

    if not args.config:
        if args.camera:
            raise CliError("--camera needs --config", exitcodes.USAGE)
        return MotionSettings(), None
    from ..config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError(f"config is not valid:\n{exc}", exitcodes.USAGE, where=args.config) from None
    ids = [c.id for c in config.cameras]
    cam_id = args.camera or ids[0]
    if cam_id not in ids:
        raise CliError(f"no camera {cam_id!r} in the config (cameras: {', '.join(ids)})", exitcodes.USAGE,
                       where=args.config)
    cam = config.camera(cam_id)
    objects = config.objects_for(cam_id) if hasattr(config, "objects_for") else None
    return effective_motion(config, cam), objects


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError("no such file", exitcodes.IO, where=str(path))
    settings, objects = _settings(args)
    try:
        from sealcam.motion.decode import DecodeError
        from sealcam.motion.pipeline import ObjectsUnavailable
        from sealcam.motion.scan import scan_file
    except ImportError as exc:
        raise CliError(f"motion detection needs {exc.name}", exitcodes.USAGE,
                       hint="install the motion extra: pip install 'sealcam[motion]'") from None
    try:
        result = scan_file(path, settings, objects)
    except DecodeError as exc:
        raise CliError(str(exc), exitcodes.IO, where=str(path)) from None
    except ObjectsUnavailable as exc:
        raise CliError(str(exc), exitcodes.USAGE, where=args.config) from None
    if args.json:
        print(json.dumps({"file": str(path), "seconds": round(result.seconds, 2), "frames": result.frames,
                          "events": [e.as_dict() for e in result.events]}, indent=1))
        return exitcodes.OK
    print(f"{path}: {result.seconds:.1f} s, {result.frames} frames analysed at {settings.detect_fps:g} fps, "
          f"{len(result.events)} event(s)")
    for e in result.events:
        end = f"{e.end_s:8.2f}" if e.end_s is not None else "     ..."
        labels = ", ".join(f"{k} {v:.2f}" for k, v in sorted(e.labels.items(), key=lambda kv: -kv[1]))
        print(f"  {e.start_s:8.2f} - {end}  {e.kind:7s} {e.label} ({e.score / 1000:.2f})"
              + (f"  [{labels}]" if labels else ""))
    return exitcodes.OK
