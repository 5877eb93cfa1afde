"""Connecting to a bus by URL, with retries: a lost connection is retried, never a crash loop.

    unix:///run/sealcam/plain.sock[?db=0]      the default (socket on a shared volume)
    redis://user@host:6379/0                    multi-host (k8s); the password comes from a file, not the URL
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from ..config.secrets import SecretRef

class _RetryButNotAuth(Retry):
    """Retry lost connections and timeouts, but not a refused login: redis-py's AuthenticationError is a
    ConnectionError, and retrying a wrong password only turns a clear error into a slow loop."""

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):  # noqa: ANN001, ANN201
        def retryable(err: Exception) -> bool:
            return not isinstance(err, redis.AuthenticationError) and (is_retryable is None or is_retryable(err))

        return super().call_with_retry(do, fail, retryable, with_failure_count)


RETRY_ATTEMPTS = 8  # 8 attempts with exponential backoff capped at 2 s: ~10 s before a call fails


class BusUrlError(ValueError):
    pass


@dataclass(frozen=True)
class BusAuth:
    """A service's ACL user on one bus: its name and where its password lives (read only when connecting)."""

    username: str
    password_file: SecretRef

    def __repr__(self) -> str:
        return f"BusAuth({self.username!r}, {self.password_file!r})"


def connect(url: str, *, password: str | None = None, name: str | None = None,
            socket_timeout: float | None = 10.0, username: str | None = None,
            auth: BusAuth | None = None) -> redis.Redis:
    """A client for `url`. Connection errors and timeouts are retried with backoff inside each call.

    `auth` (from the service's config section) gives the ACL user and its password file; `username`/`password`
    set them directly. With neither, the connection uses the server's default user (no ACL configured)."""
    u = urlparse(url)
    if auth is not None:
        username, password = auth.username, auth.password_file.reveal()
    retry = _RetryButNotAuth(ExponentialBackoff(cap=2.0, base=0.05), RETRY_ATTEMPTS)
    common = dict(username=username or u.username or None, password=password, client_name=name,
                  socket_timeout=socket_timeout, retry=retry,
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
        return redis.Redis(host=u.hostname or "localhost", port=u.port or 6379, db=db,
                           ssl=u.scheme == "rediss", **common)
    raise BusUrlError(f"bus URL {url!r}: scheme must be unix, redis or rediss")
