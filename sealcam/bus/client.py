"""Connecting to a bus by URL, with retries: a lost connection is retried, never a crash loop.

    unix:///run/sealcam/plain.sock[?db=0]      the default (socket on a shared volume)
    redis://user@host:6379/0                    multi-host (k8s); the password comes from a file, not the URL
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

RETRY_ATTEMPTS = 8  # 8 attempts with exponential backoff capped at 2 s: ~10 s before a call fails


class BusUrlError(ValueError):
    pass


def connect(url: str, *, password: str | None = None, name: str | None = None,
            socket_timeout: float | None = 10.0) -> redis.Redis:
    """A client for `url`. Connection errors and timeouts are retried with backoff inside each call."""
    u = urlparse(url)
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), RETRY_ATTEMPTS)
    common = dict(password=password, client_name=name, socket_timeout=socket_timeout, retry=retry,
                  retry_on_error=[redis.ConnectionError, redis.TimeoutError], health_check_interval=30)
    if u.scheme == "unix":
        if not u.path:
            raise BusUrlError(f"bus URL {url!r} has no socket path")
        db = int(parse_qs(u.query).get("db", ["0"])[0])
        return redis.Redis(unix_socket_path=u.path, db=db, **common)
    if u.scheme in ("redis", "rediss"):
        if u.password:
            raise BusUrlError("bus URL must not contain a password; use the password file setting")
        db = int((u.path or "/0").lstrip("/") or 0)
        return redis.Redis(host=u.hostname or "localhost", port=u.port or 6379, db=db, username=u.username,
                           ssl=u.scheme == "rediss", **common)
    raise BusUrlError(f"bus URL {url!r}: scheme must be unix, redis or rediss")
