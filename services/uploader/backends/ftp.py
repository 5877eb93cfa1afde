"""FTP / explicit FTPS (ftplib): objects are appended with APPE after checking SIZE; MLSD (else NLST+SIZE)
for listing."""

from __future__ import annotations

import contextlib
import ftplib
import io
import posixpath
import threading
from pathlib import Path
from typing import Any

from .base import BackendError, OffsetMismatch

TIMEOUT_S = 10.0
ERRORS = (OSError, EOFError, ftplib.Error)


class FtpBackend:
    append_supported = True
    can_delete = True

    def __init__(self, cfg: Any) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.base = cfg.path.rstrip("/") or "/"
        self._ftp: ftplib.FTP | None = None
        self._lock = threading.Lock()

    def _client(self) -> ftplib.FTP:
        if self._ftp is not None:
            return self._ftp
        ftp: ftplib.FTP = ftplib.FTP_TLS(timeout=TIMEOUT_S) if self.cfg.tls else ftplib.FTP(timeout=TIMEOUT_S)  # noqa: S321 - FTPS when tls, plain FTP by the owner's choice (payload is sealed)
        try:
            ftp.connect(self.cfg.host.strip("[]"), self.cfg.port)
            ftp.login(self.cfg.user, self.cfg.password_file.reveal())
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.voidcmd("TYPE I")
        except ERRORS as exc:
            try:
                ftp.close()
            finally:
                raise BackendError(f"{self.name}: cannot connect: {type(exc).__name__}: {exc}") from exc
        self._ftp = ftp
        return ftp

    def close(self) -> None:
        if self._ftp is not None:
            with contextlib.suppress(OSError, EOFError, ftplib.Error):  # closing a dead connection
                self._ftp.close()
        self._ftp = None

    def _path(self, obj: str) -> str:
        return posixpath.join(self.base, obj)

    def _call(self, what: str, fn):  # noqa: ANN001, ANN202
        with self._lock:
            try:
                return fn(self._client())
            except BackendError:
                raise
            except ERRORS as exc:
                if not isinstance(exc, ftplib.error_perm):
                    self.close()
                raise BackendError(f"{self.name}: {what}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _size(ftp: ftplib.FTP, path: str) -> int | None:
        try:
            return ftp.size(path)
        except ftplib.error_perm:
            return None

    def size(self, obj: str) -> int | None:
        return self._call(f"size {obj}", lambda f: self._size(f, self._path(obj)))

    @staticmethod
    def _mkdirs(ftp: ftplib.FTP, d: str) -> None:
        cur = "/" if d.startswith("/") else ""
        for p in [p for p in d.split("/") if p]:
            cur = posixpath.join(cur, p) if cur else p
            try:
                ftp.mkd(cur)
            except ftplib.error_perm:
                pass  # exists (or not allowed: the upload then says so)

    def append(self, obj: str, offset: int, data: bytes) -> None:
        def run(ftp: ftplib.FTP) -> None:
            path = self._path(obj)
            have = self._size(ftp, path)
            if (have or 0) != offset:
                raise OffsetMismatch(f"{self.name}: {obj} has {have} bytes, expected {offset}")
            if have is None:
                self._mkdirs(ftp, posixpath.dirname(path))
            ftp.storbinary(f"APPE {path}", io.BytesIO(data))

        self._call(f"append {obj}", run)

    def put(self, obj: str, data: bytes) -> None:
        def run(ftp: ftplib.FTP) -> None:
            path = self._path(obj)
            self._mkdirs(ftp, posixpath.dirname(path))
            ftp.storbinary(f"STOR {path}", io.BytesIO(data))

        self._call(f"put {obj}", run)

    def complete(self, obj: str, path: Path, size: int) -> None:
        return None

    def list(self) -> dict[str, int]:
        def run(ftp: ftplib.FTP) -> dict[str, int]:
            out: dict[str, int] = {}
            stack = [""]
            while stack:
                rel = stack.pop()
                d = posixpath.join(self.base, rel) if rel else self.base
                try:
                    items = list(ftp.mlsd(d, facts=["type", "size"]))
                except ftplib.error_perm as exc:
                    if str(exc).startswith("550"):
                        continue
                    return self._list_nlst(ftp)
                for fname, facts in items:
                    if fname in (".", "..") or facts.get("type") in ("cdir", "pdir"):
                        continue
                    name = f"{rel}/{fname}" if rel else fname
                    if facts.get("type") == "dir":
                        stack.append(name)
                    else:
                        out[name] = int(facts.get("size", 0))
            return out

        return self._call("list", run)

    def _list_nlst(self, ftp: ftplib.FTP) -> dict[str, int]:
        """For servers without MLSD: NLST each folder; an entry with a SIZE is a file, else a folder."""
        out: dict[str, int] = {}
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                names = ftp.nlst(posixpath.join(self.base, rel) if rel else self.base)
            except ftplib.error_perm:
                continue
            for n in names:
                fname = posixpath.basename(n)
                name = f"{rel}/{fname}" if rel else fname
                size = self._size(ftp, self._path(name))
                if size is None:
                    stack.append(name)
                else:
                    out[name] = size
        return out

    def list_partial(self) -> dict[str, int]:
        return {}

    def delete(self, obj: str) -> None:
        def run(ftp: ftplib.FTP) -> None:
            try:
                ftp.delete(self._path(obj))
            except ftplib.error_perm as exc:
                if not str(exc).startswith("550"):
                    raise

        self._call(f"delete {obj}", run)
