"""A folder on this machine (a mounted disk or NAS share), read-only."""

from __future__ import annotations

import os
from pathlib import Path

from .base import ObjectInfo, StorageError

_SKIP = (".tmp-upload", ".partial")


class LocalReader:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.url = f"file://{self.root}"
        if not self.root.is_dir():
            raise StorageError(f"storage folder does not exist or is not a folder: {self.root}")

    def _p(self, name: str) -> Path:
        p = (self.root / name).resolve()
        if self.root not in p.parents:
            raise StorageError(f"object name escapes the storage folder: {name!r}")
        return p

    def list(self, prefix: str = "", *, start_after: str | None = None) -> dict[str, ObjectInfo]:
        out: dict[str, ObjectInfo] = {}
        top = self._p(prefix.rstrip("/")) if prefix.rstrip("/") else self.root
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(_SKIP):
                    continue
                p = Path(dirpath) / f
                try:
                    name = p.relative_to(self.root).as_posix()
                    if name.startswith(prefix) and (start_after is None or name > start_after):
                        out[name] = ObjectInfo(name, p.stat().st_size)
                except OSError:
                    continue  # removed while listing (retention)
        return out

    def read(self, name: str, offset: int, length: int) -> bytes:
        try:
            with open(self._p(name), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot read {name}: {exc.strerror}") from exc

    def close(self) -> None:
        return None
