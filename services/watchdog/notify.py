"""Alert delivery: generic webhook (JSON POST), ntfy (text POST with Title/Priority/Tags headers), and an
uptime-monitor push URL (GET), pinged only while everything is healthy.

URLs come from SecretRef files or variables (they embed tokens) and are never logged: logs name the host only.
stdlib urllib, with a timeout on every request; a failed delivery is logged and counted, never raised.
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from .rules import Event

log = logging.getLogger("sealcam.watchdog.notify")

TIMEOUT_S = 5.0
USER_AGENT = "sealcam-watchdog/1"
_NTFY_PRIORITY = {("firing", "urgent"): "urgent", ("firing", "high"): "high", ("renotify", "urgent"): "high",
                  ("renotify", "high"): "default", ("resolved", "urgent"): "default", ("resolved", "high"): "low"}


def host_of(url: str) -> str:
    """What may be logged about a URL: its host (and port), nothing of its path or query (tokens live there)."""
    try:
        u = urlsplit(url)
        return (u.hostname or "?") + (f":{u.port}" if u.port else "")
    except ValueError:
        return "?"


def _check_url(url: str, what: str) -> str:
    url = url.strip()
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL")  # never echo the value
    return url


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def title_of(ev: Event) -> str:
    word = {"firing": "ALERT", "renotify": "STILL FAILING", "resolved": "RESOLVED"}.get(ev.kind, ev.kind.upper())
    return f"sealcam {word}: {ev.key}"


@dataclass
class Notifier:
    webhook_url: str | None = None
    ntfy_url: str | None = None
    uptime_url: str | None = None
    timeout_s: float = TIMEOUT_S
    hub: str = field(default_factory=socket.gethostname)
    sent: dict[str, int] = field(default_factory=dict)  # "webhook"/"ntfy"/"uptime" -> successes
    failed: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.webhook_url:
            self.webhook_url = _check_url(self.webhook_url, "alerts webhook URL")
        if self.ntfy_url:
            self.ntfy_url = _check_url(self.ntfy_url, "alerts ntfy URL")
        if self.uptime_url:
            self.uptime_url = _check_url(self.uptime_url, "alerts uptime push URL")

    @classmethod
    def from_alerts(cls, alerts: object, timeout_s: float = TIMEOUT_S) -> Notifier:
        """From the config's `alerts` section; reads the URL secrets now (this is the one service that needs them)."""

        def read(ref: object) -> str | None:
            return ref.reveal().strip() if ref is not None else None  # type: ignore[attr-defined]

        return cls(read(getattr(alerts, "webhook_url_file", None)), read(getattr(alerts, "ntfy_url_file", None)),
                   read(getattr(alerts, "uptime_push_url_file", None)), timeout_s)

    def describe(self) -> str:
        parts = [f"{name} -> {host_of(url)}" for name, url in
                 (("webhook", self.webhook_url), ("ntfy", self.ntfy_url), ("uptime", self.uptime_url)) if url]
        return ", ".join(parts) or "no alert channels configured"

    def _request(self, channel: str, req: urllib.request.Request) -> bool:
        host = host_of(req.full_url)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - http(s) only, see _check_url
                resp.read(4096)
                ok = 200 <= resp.status < 300
        except urllib.error.HTTPError as exc:
            log.warning("%s delivery to %s failed: HTTP %s", channel, host, exc.code)
            ok = False
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            log.warning("%s delivery to %s failed: %s", channel, host, type(reason).__name__
                        if not isinstance(reason, str) else reason)
            ok = False
        box = self.sent if ok else self.failed
        box[channel] = box.get(channel, 0) + 1
        return ok

    def send(self, ev: Event) -> bool:
        """Deliver one alert event on every configured channel; True if all deliveries worked."""
        ok = True
        if self.webhook_url:
            body = {"source": "sealcam-watchdog", "hub": self.hub, "event": ev.kind, "condition": ev.key,
                    "severity": ev.severity, "summary": ev.reason, "title": title_of(ev), "at": _iso(ev.at),
                    "since": _iso(ev.since)}
            req = urllib.request.Request(self.webhook_url, data=json.dumps(body).encode(), method="POST",  # noqa: S310
                                         headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
            ok &= self._request("webhook", req)
        if self.ntfy_url:
            prio = _NTFY_PRIORITY.get((ev.kind, ev.severity), "default")
            tags = "white_check_mark" if ev.kind == "resolved" else "rotating_light"
            text = f"{ev.reason}\n(hub {self.hub}, since {_iso(ev.since)})"
            req = urllib.request.Request(self.ntfy_url, data=text.encode(), method="POST",  # noqa: S310
                                         headers={"Title": title_of(ev), "Priority": prio, "Tags": tags,
                                                  "Content-Type": "text/plain; charset=utf-8",
                                                  "User-Agent": USER_AGENT})
            ok &= self._request("ntfy", req)
        return ok

    def ping_uptime(self) -> bool:
        """GET the uptime push URL. Call only while everything is healthy: silence is the alert."""
        if not self.uptime_url:
            return True
        req = urllib.request.Request(self.uptime_url, method="GET",  # noqa: S310
                                     headers={"User-Agent": USER_AGENT})
        return self._request("uptime", req)
