"""The viewer's web app (Flask): a single page plus a small JSON API and the fMP4 playback stream.

Bound to localhost by default. Every request must carry the session cookie set by opening the one-time URL
that `sealcam view` prints (other local users cannot watch), and a Host header naming this machine (no DNS
rebinding). Responses are never cached by the browser. Nothing decrypted is written to disk: video,
thumbnails and exports are built in memory and sent.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
from importlib import resources

from flask import Flask, Response, abort, jsonify, redirect, request

from ..format import problems as P
from ..format.errors import SealcamError
from ..storage.base import StorageError
from . import timeline as TL
from .archive import Archive, Camera
from .events import EventScanner
from .export import ExportError, export_clip, zip_bytes
from .stream import NothingToPlay, Stream

log = logging.getLogger("sealcam.viewer")
COOKIE = "sealcam_view"
_HEX = re.compile(r"^[0-9a-f]{16,64}$")
DAY_US = 86_400_000_000
#: What reading and decrypting one segment can raise (verification failure, no key for it, storage trouble).
READ_ERRORS = (SealcamError, StorageError, OSError)


class Viewer:
    """State shared by the requests: the archive, the event scanner, the background verifier."""

    def __init__(self, archive: Archive, *, token: str | None = None, hosts: set[str] | None = None,
                 deep_verify: bool = True) -> None:
        self.archive = archive
        self.scanner = EventScanner(archive)
        self.token = token or secrets.token_urlsafe(18)
        self.hosts = hosts or {"127.0.0.1", "localhost", "[::1]"}
        self.stop = threading.Event()
        self.deep_state = "pending" if deep_verify else "off"
        self._deep = deep_verify
        self._refresh_lock = threading.Lock()

    def start(self) -> None:
        self.archive.refresh()
        if self._deep:
            threading.Thread(target=self._deep_verify, name="deep-verify", daemon=True).start()

    def _deep_verify(self) -> None:
        self.deep_state = "running"
        try:
            self.archive.deep_verify(self.stop)
            self.deep_state = "done"
        except StorageError as exc:
            log.warning("viewer: full verification stopped: %s", exc)
            self.deep_state = f"failed: {exc}"

    def camera(self, handle_hex: str) -> Camera:
        if not _HEX.match(handle_hex):
            abort(404)
        cam = self.archive.camera(bytes.fromhex(handle_hex))
        if cam is None:
            abort(404)
        return cam

    def camera_name(self, cam: Camera) -> str | None:
        for seg in cam.segments[:1]:
            try:
                return self.scanner.scan(seg).camera_name
            except READ_ERRORS:  # a name is a nicety: an unreadable first segment must not hide the camera
                return None
        return None


def _int_arg(name: str, default: int | None = None) -> int:
    v = request.args.get(name)
    if v is None:
        if default is None:
            abort(400, f"missing parameter {name}")
        return default
    try:
        return int(v)
    except ValueError:
        abort(400, f"parameter {name} must be an integer (µs since 1970, UTC)")


def create_app(viewer: Viewer) -> Flask:
    app = Flask(__name__, static_folder=None)
    static = resources.files("sealcam.viewer") / "static"

    @app.before_request
    def guard():  # noqa: ANN202
        host = (request.host or "").rsplit(":", 1)[0] if not (request.host or "").endswith("]") else request.host
        if host not in viewer.hosts:
            abort(403, "unexpected Host header")
        if request.path == "/" and "token" in request.args:
            if not hmac.compare_digest(request.args["token"], viewer.token):
                abort(403, "wrong token: open the URL that `sealcam view` printed")
            resp = redirect("/")
            resp.set_cookie(COOKIE, viewer.token, httponly=True, samesite="Strict")
            return resp
        if not hmac.compare_digest(request.cookies.get(COOKIE, ""), viewer.token):
            abort(403, "open the URL that `sealcam view` printed (it carries a one-time token)")
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; "
                                                   "style-src 'self'; script-src 'self'")
        return resp

    @app.get("/")
    def index() -> Response:
        return Response((static / "index.html").read_bytes(), mimetype="text/html")

    @app.get("/static/<name>")
    def asset(name: str) -> Response:
        types = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in types:
            abort(404)
        return Response((static / name).read_bytes(), mimetype=types[name])

    @app.get("/api/cameras")
    def cameras() -> Response:
        out = []
        for handle, cam in sorted(viewer.archive.cameras.items()):
            if not handle:
                continue
            times = [t for s in cam.segments for t in s.times()]
            out.append({"handle": handle.hex(), "name": viewer.camera_name(cam), "segments": len(cam.segments),
                        "first": min(times, default=None), "last": max(times, default=None),
                        "problems": len(cam.problems), "gaps": len(cam.gaps), "live": cam.open_segment is not None})
        unknown = viewer.archive.cameras.get(b"")
        return jsonify({"cameras": out, "generation": viewer.archive.generation, "verify": viewer.deep_state,
                        "unreadable": [p.to_json() for p in unknown.problems] if unknown else []})

    @app.get("/api/cameras/<handle>/timeline")
    def timeline(handle: str) -> Response:
        cam = viewer.camera(handle)
        a = _int_arg("from")
        b = _int_arg("until", a + DAY_US)
        bad: dict[str, list[str]] = {}
        for p in cam.problems:
            bad.setdefault(p.file or "", []).append(p.kind)
        segs, evs, thumbs = [], [], []
        for s in cam.segments:
            times = s.times()
            segs.append(TL.SegInfo(s.name, s.seq, times, bad.get(s.name, []), s.name == cam.open_segment))
            if times and times[-1] >= a - 60_000_000 and times[0] < b and s.name not in bad:
                try:
                    found = viewer.scanner.scan(s)
                except READ_ERRORS as exc:  # one unreadable segment must not blank the timeline
                    log.warning("viewer: events of %s unreadable: %s", s.name, exc)
                    continue
                evs += found.events
                thumbs += found.thumbs
        gaps = [TL.GapInfo(g.gap.from_us, g.gap.until_us, g.gap.reason.name.lower().replace("_", "-"), g.gap.detail,
                           g.gap.lost_first_seq, g.gap.lost_count) for g in cam.gaps]
        return jsonify({
            "handle": handle, "from": a, "until": b, "generation": viewer.archive.generation,
            "verify": viewer.deep_state, "live": cam.open_segment is not None,
            "spans": TL.clip(TL.spans(segs), a, b), "gaps": TL.clip(TL.gaps(gaps), a, b),
            "suspicious": TL.clip(TL.suspicious(segs, cam.problems), a, b),
            "events": TL.clip(TL.events(evs, thumbs), a, b),
            "problems": [_problem(p) for p in cam.problems],
        })

    @app.get("/api/cameras/<handle>/thumb/<int:seq>/<int:index>")
    def thumb(handle: str, seq: int, index: int) -> Response:
        cam = viewer.camera(handle)
        seg = next((s for s in cam.segments if s.seq == seq and s.name not in cam.bad_names()), None)
        data = viewer.scanner.thumbnail(seg, index) if seg is not None else None
        if data is None:
            abort(404)
        return Response(data, mimetype="image/jpeg")

    @app.get("/api/cameras/<handle>/stream")
    def stream(handle: str) -> Response:
        viewer.camera(handle)
        s = Stream(viewer.archive, bytes.fromhex(handle), _int_arg("t"), live=request.args.get("live") == "1",
                   stop=viewer.stop)
        try:
            info, body = s.open()
        except NothingToPlay as exc:
            abort(404, str(exc))
        resp = Response(body, mimetype="video/mp4", direct_passthrough=True)
        resp.headers["X-Base-Us"] = str(info.base_us)
        resp.headers["X-Start-Us"] = str(info.start_us)
        resp.headers["X-Codecs"] = info.codecs
        return resp

    @app.get("/api/cameras/<handle>/export")
    def export(handle: str) -> Response:
        cam = viewer.camera(handle)
        a, b = _int_arg("from"), _int_arg("until")
        try:
            files = export_clip(viewer.archive, cam.handle, a, b, viewer.camera_name(cam))
        except ExportError as exc:
            abort(404, str(exc))
        resp = Response(zip_bytes(files), mimetype="application/zip")
        resp.headers["Content-Disposition"] = f'attachment; filename="sealcam-{handle[:8]}-{a // 1_000_000}.zip"'
        return resp

    @app.get("/api/export-report")
    def export_report() -> Response:  # the report only (for the page to show before downloading)
        cam = viewer.camera(request.args.get("handle", ""))
        try:
            files = export_clip(viewer.archive, cam.handle, _int_arg("from"), _int_arg("until"),
                                viewer.camera_name(cam))
        except ExportError as exc:
            abort(404, str(exc))
        return Response(files["report.json"], mimetype="application/json")

    return app


def _problem(p: P.Problem) -> dict:
    d = p.to_json()
    d["text"] = f"{p.kind}: {p.message} ({p.where()})"
    return d
