"""SFTP (paramiko), read-only: listdir_attr for listing, open + seek + read for ranges.

The server's host key must be in the pinned known_hosts file (RejectPolicy: never trust on first use).
"""

from __future__ import annotations

import contextlib
import posixpath
import stat as statmod
import threading
from pathlib import Path

import paramiko

from .base import ObjectInfo, StorageError

TIMEOUT_S = 10.0
_ERRORS = (OSError, EOFError, paramiko.SSHException)


class SftpReader:
    def __init__(self, host: str, port: int, user: str, path: str, *, known_hosts: str | Path,
                 key_file: str | Path | None = None, password: str | None = None) -> None:
        self.host, self.port, self.user = host, port, user
        self.base = path.rstrip("/") or "/"
        self.known_hosts = str(known_hosts)
        self.key_file = str(key_file) if key_file else None
        self._password = password
        self.url = f"sftp://{user}@{host}:{port}{self.base}"
        self._ssh: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> paramiko.SFTPClient:
        if self._sftp is not None and self._ssh is not None:
            t = self._ssh.get_transport()
            if t is not None and t.is_active():
                return self._sftp
            self.close()
        ssh = paramiko.SSHClient()
        try:
            ssh.load_host_keys(self.known_hosts)
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot read known_hosts file {self.known_hosts}: {exc.strerror}") from exc
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            ssh.connect(self.host, port=self.port, username=self.user, key_filename=self.key_file,
                        password=self._password, timeout=TIMEOUT_S, banner_timeout=TIMEOUT_S,
                        auth_timeout=TIMEOUT_S, look_for_keys=False, allow_agent=False)
            sftp = ssh.open_sftp()
            sftp.get_channel().settimeout(TIMEOUT_S)
        except _ERRORS as exc:
            ssh.close()
            raise StorageError(f"{self.url}: cannot connect: {type(exc).__name__}: {exc}") from exc
        self._ssh, self._sftp = ssh, sftp
        return sftp

    def _call(self, what: str, fn):  # noqa: ANN001, ANN202
        with self._lock:
            try:
                return fn(self._client())
            except StorageError:
                raise
            except _ERRORS as exc:
                if not isinstance(exc, FileNotFoundError | PermissionError):
                    self.close()
                raise StorageError(f"{self.url}: {what}: {type(exc).__name__}: {exc}") from exc

    def list(self, prefix: str = "", *, start_after: str | None = None) -> dict[str, ObjectInfo]:
        def run(sftp: paramiko.SFTPClient) -> dict[str, ObjectInfo]:
            out: dict[str, ObjectInfo] = {}
            stack = [prefix.strip("/")] if ".." not in prefix.split("/") else [""]
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
                        out[name] = ObjectInfo(name, a.st_size or 0)
            return out

        return {k: v for k, v in self._call("list", run).items()
                if k.startswith(prefix) and (start_after is None or k > start_after)}

    def read(self, name: str, offset: int, length: int) -> bytes:
        if ".." in name.split("/"):
            raise StorageError(f"object name escapes the storage folder: {name!r}")

        def run(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(posixpath.join(self.base, name), "rb") as f:
                f.seek(offset)
                parts, got = [], 0
                while got < length:
                    b = f.read(length - got)
                    if not b:
                        break
                    parts.append(b)
                    got += len(b)
                return b"".join(parts)

        return self._call(f"read {name}", run)

    def close(self) -> None:
        for c in (self._sftp, self._ssh):
            if c is not None:
                with contextlib.suppress(*_ERRORS):  # closing a dead connection
                    c.close()
        self._sftp = self._ssh = None
