"""SFTP (paramiko): objects are appended in place (open 'a'), after checking the remote size with stat.

The server's host key must be pinned in `known_hosts_file` (RejectPolicy: never trust on first use). The
password or private key is read from its SecretRef when connecting and kept only inside paramiko.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import stat as statmod
import threading
from pathlib import Path
from typing import Any

import paramiko

from .base import BackendError, OffsetMismatch

TIMEOUT_S = 10.0


def _load_key(text: str) -> paramiko.PKey:
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(type(exc).__name__)
    raise BackendError("SFTP key file is not an Ed25519, ECDSA or RSA private key (unencrypted)")


class SftpBackend:
    append_supported = True
    can_delete = True

    def __init__(self, cfg: Any) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.base = cfg.path.rstrip("/") or "/"
        self._ssh: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()

    # -- connection --------------------------------------------------------------------------------------
    def _client(self) -> paramiko.SFTPClient:
        if self._sftp is not None and self._ssh is not None:
            t = self._ssh.get_transport()
            if t is not None and t.is_active():
                return self._sftp
            self.close()
        ssh = paramiko.SSHClient()
        ssh.load_host_keys(str(self.cfg.known_hosts_file))
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        kwargs: dict[str, Any] = dict(hostname=self.cfg.host.strip("[]"), port=self.cfg.port, username=self.cfg.user,
                                      timeout=TIMEOUT_S, banner_timeout=TIMEOUT_S, auth_timeout=TIMEOUT_S,
                                      look_for_keys=False, allow_agent=False)
        if self.cfg.key_file is not None:
            kwargs["pkey"] = _load_key(self.cfg.key_file.reveal())
        else:
            kwargs["password"] = self.cfg.password_file.reveal()
        try:
            ssh.connect(**kwargs)
            sftp = ssh.open_sftp()
            sftp.get_channel().settimeout(TIMEOUT_S)
        except (OSError, paramiko.SSHException) as exc:
            ssh.close()
            raise BackendError(f"{self.name}: cannot connect: {type(exc).__name__}: {exc}") from exc
        self._ssh, self._sftp = ssh, sftp
        return sftp

    def close(self) -> None:
        for c in (self._sftp, self._ssh):
            if c is not None:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):  # closing a dead connection
                    c.close()
        self._sftp = self._ssh = None

    def _path(self, obj: str) -> str:
        return posixpath.join(self.base, obj)

    def _call(self, what: str, fn):  # noqa: ANN001, ANN202
        with self._lock:
            try:
                return fn(self._client())
            except BackendError:
                raise
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if not isinstance(exc, FileNotFoundError | PermissionError):
                    self.close()
                raise BackendError(f"{self.name}: {what}: {type(exc).__name__}: {exc}") from exc

    # -- operations --------------------------------------------------------------------------------------
    @staticmethod
    def _stat_size(sftp: paramiko.SFTPClient, path: str) -> int | None:
        try:
            return sftp.stat(path).st_size
        except FileNotFoundError:
            return None

    def size(self, obj: str) -> int | None:
        return self._call(f"stat {obj}", lambda s: self._stat_size(s, self._path(obj)))

    def _mkdirs(self, sftp: paramiko.SFTPClient, d: str) -> None:
        parts = [p for p in d.split("/") if p]
        cur = "/" if d.startswith("/") else ""
        for p in parts:
            cur = posixpath.join(cur, p) if cur else p
            try:
                sftp.stat(cur)
            except FileNotFoundError:
                try:
                    sftp.mkdir(cur)
                except OSError:
                    sftp.stat(cur)  # created concurrently, else raises

    def append(self, obj: str, offset: int, data: bytes) -> None:
        def run(sftp: paramiko.SFTPClient) -> None:
            path = self._path(obj)
            have = self._stat_size(sftp, path)
            if (have or 0) != offset:
                raise OffsetMismatch(f"{self.name}: {obj} has {have} bytes, expected {offset}")
            if have is None:
                self._mkdirs(sftp, posixpath.dirname(path))
            with sftp.open(path, "ab") as f:
                f.set_pipelined(True)
                f.write(data)
            after = self._stat_size(sftp, path)
            if after != offset + len(data):
                raise BackendError(f"{self.name}: {obj} has {after} bytes after append, expected "
                                   f"{offset + len(data)}")

        self._call(f"append {obj}", run)

    def put(self, obj: str, data: bytes) -> None:
        def run(sftp: paramiko.SFTPClient) -> None:
            path = self._path(obj)
            self._mkdirs(sftp, posixpath.dirname(path))
            tmp = path + ".tmp-upload"
            with sftp.open(tmp, "wb") as f:
                f.write(data)
            sftp.posix_rename(tmp, path)

        self._call(f"put {obj}", run)

    def complete(self, obj: str, path: Path, size: int) -> None:
        return None

    def list(self) -> dict[str, int]:
        def run(sftp: paramiko.SFTPClient) -> dict[str, int]:
            out: dict[str, int] = {}
            stack = [""]
            while stack:
                rel = stack.pop()
                try:
                    items = sftp.listdir_attr(posixpath.join(self.base, rel) if rel else self.base)
                except FileNotFoundError:
                    continue
                for a in items:
                    name = f"{rel}/{a.filename}" if rel else a.filename
                    if statmod.S_ISDIR(a.st_mode or 0):
                        stack.append(name)
                    elif not name.endswith(".tmp-upload"):
                        out[name] = a.st_size or 0
            return out

        return self._call("list", run)

    def list_partial(self) -> dict[str, int]:
        return {}

    def delete(self, obj: str) -> None:
        def run(sftp: paramiko.SFTPClient) -> None:
            try:
                sftp.remove(self._path(obj))
            except FileNotFoundError:
                pass

        self._call(f"delete {obj}", run)
