"""RTSP camera emulator for tests (a helper, not a test): gst-rtsp-server on 127.0.0.1 serving live H.264 of a
bouncing ball (320x240, 10 fps, a key frame every second).

It runs as a subprocess of the SYSTEM Python (/usr/bin/python3 with Debian's python3-gi and
gir1.2-gst-rtsp-server-1.0, installed by `scripts/setup.sh --test`), never inside the venv.

    with rtsp_camera() as cam:          # cam.url == "rtsp://127.0.0.1:PORT/cam"
        ...
        cam.stop()                      # the camera goes away (connections drop)
        cam.start()                     # and comes back on the same port
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
PIPELINE = ("( videotestsrc pattern=ball is-live=true ! video/x-raw,width=320,height=240,framerate=10/1 ! "
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 )")

_SERVER = r"""
import signal, sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

Gst.init(None)
port, path, pipeline = sys.argv[1], sys.argv[2], sys.argv[3]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(pipeline)
factory.set_shared(True)
server.get_mount_points().add_factory(path, factory)
if server.attach(None) == 0:
    sys.exit("cannot bind 127.0.0.1:" + port)
loop = GLib.MainLoop()
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
print("ready", flush=True)
loop.run()
"""


def available() -> str | None:
    """None when the emulator can run here, else why not (for pytest.skip)."""
    if not Path(SYSTEM_PYTHON).is_file():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
                            "assert Gst.ElementFactory.find('x264enc'), 'x264enc'; "
                            "assert Gst.ElementFactory.find('rtph264pay'), 'rtph264pay'"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return ("RTSP emulator unavailable (run scripts/setup.sh --test): "
                + (probe.stderr.strip().splitlines() or ["?"])[-1])
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspCamera:
    def __init__(self, port: int | None = None, path: str = "/cam", pipeline: str = PIPELINE) -> None:
        self.port = port or free_port()
        self.path = path
        self.pipeline = pipeline
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self, timeout_s: float = 15.0) -> RtspCamera:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen([SYSTEM_PYTHON, "-c", _SERVER, str(self.port), self.path, self.pipeline],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"RTSP emulator exited ({self.proc.returncode}): {err.strip()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"RTSP emulator did not accept on port {self.port} within {timeout_s} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> RtspCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def rtsp_camera(port: int | None = None) -> Iterator[RtspCamera]:
    """A running emulator; `.url` to connect, `.stop()`/`.start()` to take it away and bring it back."""
    cam = RtspCamera(port)
    with cam:
        yield cam


if __name__ == "__main__":  # manual use: python tests/rtsp_server.py, then ffplay the printed URL
    with rtsp_camera() as c:
        print(c.url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
