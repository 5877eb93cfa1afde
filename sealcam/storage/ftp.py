"""FTP / explicit FTPS (ftplib), read-only: MLSD (else NLST + SIZE) for listing, REST + RETR for ranges."""

from __future__ import annotations

import contextlib
import ftplib
import posixpath
import threading

from .base import ObjectInfo, StorageError

TIMEOUT_S = 10.0
_ERRORS = (OSError, EOFError, ftplib.Error)


class FtpReader:
    def __init__(self, host: str, port: int, user: str, path: str, *, password: str, tls: bool = False) -> None:
        self.host, self.port, self.user, self.tls = host, port, user, tls
        self.base = path.rstrip("/") or "/"
        self._password = password
        self.url = f"{'ftps' if tls else 'ftp'}://{user}@{host}:{port}{self.base}"
        self._ftp: ftplib.FTP | None = None
        self._lock = threading.Lock()

    def _client(self) -> ftplib.FTP:
        if self._ftp is not None:
            return self._ftp
        ftp = ftplib.FTP_TLS(timeout=TIMEOUT_S) if self.tls else ftplib.FTP(timeout=TIMEOUT_S)  # noqa: S321 - plain FTP by the owner's choice (objects are sealed)
        try:
            ftp.connect(self.host, self.port)
            ftp.login(self.user, self._password)
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.voidcmd("TYPE I")
        except _ERRORS as exc:
            with contextlib.suppress(*_ERRORS):
                ftp.close()
            raise StorageError(f"{self.url}: cannot connect: {type(exc).__name__}: {exc}") from exc
        self._ftp = ftp
        return ftp

    def _call(self, what: str, fn):  # noqa: ANN001, ANN202
        with self._lock:
            try:
                return fn(self._client())
            except StorageError:
                raise
            except _ERRORS as exc:
                self.close()  # a half-read transfer leaves the control connection in an unknown state
                raise StorageError(f"{self.url}: {what}: {type(exc).__name__}: {exc}") from exc

    def list(self, prefix: str = "", *, start_after: str | None = None) -> dict[str, ObjectInfo]:
        def run(ftp: ftplib.FTP) -> dict[str, ObjectInfo]:
            out: dict[str, ObjectInfo] = {}
            stack = [prefix.strip("/")] if ".." not in prefix.split("/") else [""]
            while stack:
                rel = stack.pop()
                d = posixpath.join(self.base, rel) if rel else self.base
                try:
                    items = list(ftp.mlsd(d, facts=["type", "size"]))
                except ftplib.error_perm as exc:
                    if str(exc).startswith("550"):
                        continue
                    raise
                for fname, facts in items:
                    if fname in (".", "..") or facts.get("type") in ("cdir", "pdir"):
                        continue
                    name = f"{rel}/{fname}" if rel else fname
                    if facts.get("type") == "dir":
                        stack.append(name)
                    elif not name.endswith(".tmp-upload"):
                        out[name] = ObjectInfo(name, int(facts.get("size", 0)))
            return out

        return {k: v for k, v in self._call("list", run).items()
                if k.startswith(prefix) and (start_after is None or k > start_after)}

    def read(self, name: str, offset: int, length: int) -> bytes:
        if ".." in name.split("/"):
            raise StorageError(f"object name escapes the storage folder: {name!r}")

        def run(ftp: ftplib.FTP) -> bytes:
            ftp.voidcmd("TYPE I")  # listing (MLSD) switches to ASCII, where REST is refused
            conn = ftp.transfercmd(f"RETR {posixpath.join(self.base, name)}", rest=offset)
            parts, got = [], 0
            try:
                while got < length:
                    b = conn.recv(min(65536, length - got))
                    if not b:
                        break
                    parts.append(b)
                    got += len(b)
            finally:
                conn.close()
            if got >= length:  # stopped early: the server answers 426 (aborted) or 226 (it had sent all)
                with contextlib.suppress(ftplib.error_temp, ftplib.error_perm):
                    ftp.voidresp()
            else:
                ftp.voidresp()
            return b"".join(parts)

        return self._call(f"read {name}", run)

    def close(self) -> None:
        if self._ftp is not None:
            with contextlib.suppress(*_ERRORS):  # closing a dead connection
                self._ftp.close()
        self._ftp = None
