"""`/healthz` (200 healthy, 503 with reasons) and Prometheus `/metrics` (text exposition format 0.0.4, by
hand: no extra dependency), served by stdlib http.server in a thread on a loopback port.

The service publishes a `Snapshot` (healthy flag, reasons, metric samples) after every evaluation; the HTTP
threads only read the latest one.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("sealcam.watchdog.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9481


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: tuple[tuple[dict[str, str], float], ...]


@dataclass(frozen=True)
class Snapshot:
    healthy: bool = False
    reasons: dict[str, str] = field(default_factory=lambda: {"starting": "watchdog has not evaluated yet"})
    metrics: tuple[Metric, ...] = ()


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if v != v:  # NaN
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


def render_metrics(metrics: tuple[Metric, ...]) -> str:
    out: list[str] = []
    for m in metrics:
        out.append(f"# HELP {m.name} {m.help}")
        out.append(f"# TYPE {m.name} {m.kind}")
        for labels, value in m.samples:
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            out.append(f"{m.name}{{{lab}}} {_num(value)}" if lab else f"{m.name} {_num(value)}")
    return "\n".join(out) + "\n"


class StatusServer:
    """The HTTP endpoint. `port=0` picks a free port (see `.port` after `start()`)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self._lock = threading.Lock()
        self._snap = Snapshot()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "sealcam-watchdog"
            sys_version = ""

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                snap = owner.snapshot()
                if path == "/healthz":
                    body = json.dumps({"status": "ok" if snap.healthy else "unhealthy",
                                       "reasons": snap.reasons}, indent=1).encode() + b"\n"
                    self._reply(200 if snap.healthy else 503, "application/json", body)
                elif path == "/metrics":
                    self._reply(200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(snap.metrics).encode())
                else:
                    self._reply(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

            def _reply(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server API
                log.debug("http: " + format, *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    def publish(self, snap: Snapshot) -> None:
        with self._lock:
            self._snap = snap

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snap

    def start(self) -> StatusServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="watchdog-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(5)
