"""A folder on this machine (a mounted disk or NAS share): O_APPEND writes, fsynced."""

from __future__ import annotations

import os
from pathlib import Path

from .base import BackendError, OffsetMismatch


class LocalBackend:
    append_supported = True
    can_delete = True

    def __init__(self, name: str, root: str | Path) -> None:
        self.name = name
        self.root = Path(root).resolve()

    def _p(self, obj: str) -> Path:
        p = self.root / obj
        if self.root.resolve() not in p.resolve().parents:
            raise BackendError(f"object name escapes the folder: {obj!r}")
        return p

    def size(self, obj: str) -> int | None:
        try:
            return self._p(obj).stat().st_size
        except FileNotFoundError:
            return None

    def append(self, obj: str, offset: int, data: bytes) -> None:
        p = self._p(obj)
        created = not p.exists()
        try:
            if created:
                p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise BackendError(f"{self.name}: cannot open {obj}: {exc.strerror}") from exc
        try:
            size = os.fstat(fd).st_size
            if size != offset:
                raise OffsetMismatch(f"{self.name}: {obj} has {size} bytes, expected {offset}")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            raise BackendError(f"{self.name}: write {obj}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        if created:
            dfd = os.open(p.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def put(self, obj: str, data: bytes) -> None:
        p = self._p(obj)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp-upload")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)

    def complete(self, obj: str, path: Path, size: int) -> None:
        return None

    def list(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if not self.root.exists():
            return out
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                if f.endswith(".tmp-upload"):
                    continue
                p = Path(dirpath) / f
                try:
                    out[p.relative_to(self.root).as_posix()] = p.stat().st_size
                except FileNotFoundError:
                    continue
        return out

    def list_partial(self) -> dict[str, int]:
        return {}

    def delete(self, obj: str) -> None:
        try:
            self._p(obj).unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        return None
