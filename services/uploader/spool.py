"""Append-only local spool of ciphertext: `<data_dir>/spool/<object_name>`, complete markers under
`<data_dir>/spool.done/<object_name>`.

`append(record)` is the only way bytes get in. It checks `offset` against the current size: equal → write;
smaller → the record was already spooled (a redelivery after a crash before XACK): skipped when the bytes
match, refused when they differ; larger → a hole, refused (the spool is never sparse). Every write is fsynced
(and the directory too when a file is created) before `append` returns, so the caller may XACK afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sealcam.bus.contract import SealedRecord

CHUNK = 8 * 1024 * 1024


class SpoolError(Exception):
    """A record cannot be spooled (a hole, or bytes that differ from what is already there)."""


@dataclass(frozen=True)
class SpoolEntry:
    name: str
    size: int
    complete: bool
    mtime: float


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(path: Path, stop: Path) -> None:
    """mkdir -p, fsyncing each parent whose entry changed."""
    missing = []
    p = path
    while not p.exists() and p != stop and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        _fsync_dir(d.parent)


class Spool:
    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir / "spool"
        self.done_root = self.data_dir / "spool.done"
        self.class_root = self.data_dir / "spool.class"  # event/<object>: objects of retention class "event"
        for d in (self.root, self.done_root, self.class_root):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- paths -------------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        p = self.root / name
        if self.root not in p.resolve().parents:  # names are validated by the contract; belt and braces
            raise SpoolError(f"object name escapes the spool: {name!r}")
        return p

    def _done(self, name: str) -> Path:
        return self.done_root / name

    # -- queries -----------------------------------------------------------------------------------------
    def size(self, name: str) -> int:
        try:
            return self.path(name).stat().st_size
        except FileNotFoundError:
            return 0

    def is_complete(self, name: str) -> bool:
        return self._done(name).exists()

    def entries(self) -> dict[str, SpoolEntry]:
        out: dict[str, SpoolEntry] = {}
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                p = Path(dirpath) / f
                name = p.relative_to(self.root).as_posix()
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                out[name] = SpoolEntry(name, st.st_size, self.is_complete(name), st.st_mtime)
        return out

    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries().values())

    def read(self, name: str, offset: int, length: int) -> bytes:
        with open(self.path(name), "rb") as f:
            f.seek(offset)
            return f.read(length)

    # -- writes ------------------------------------------------------------------------------------------
    def append(self, rec: SealedRecord) -> bool:
        """Spool `rec` durably. True if bytes were written, False if it was already there (idempotent)."""
        p = self.path(rec.object_name)
        if self.is_complete(rec.object_name):
            size = p.stat().st_size if p.exists() else 0
            if rec.offset + len(rec.data) <= size and self.read(rec.object_name, rec.offset, len(rec.data)) == rec.data:
                return False
            raise SpoolError(f"{rec.object_name}: record at offset {rec.offset} after the object was complete")
        created = not p.exists()
        if created:
            _makedirs(p.parent, self.root)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            data = rec.data
            if rec.offset > size:
                raise SpoolError(f"{rec.object_name}: hole: record at offset {rec.offset}, spool has {size} bytes")
            if rec.offset < size:
                have = self.read(rec.object_name, rec.offset, min(len(data), size - rec.offset))
                if have != data[: len(have)]:
                    raise SpoolError(f"{rec.object_name}: record at offset {rec.offset} differs from spooled bytes")
                data = data[len(have):]
            wrote = bool(data)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if wrote:
                os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(p.parent)
        if rec.final:
            self._mark_complete(rec.object_name)
            wrote = True
        return wrote

    def _mark_complete(self, name: str) -> None:
        d = self._done(name)
        _makedirs(d.parent, self.done_root)
        fd = os.open(d, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(d.parent)

    # -- retention classes -------------------------------------------------------------------------------
    def mark_event(self, name: str) -> bool:
        """Remember (durably) that `name` holds an event (retention class "event"). True if newly marked.
        Kept after the object leaves the spool: remote retention still needs the class."""
        p = self.class_root / "event" / name
        if self.root not in self.path(name).resolve().parents or p.exists():
            return False
        _makedirs(p.parent, self.class_root)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(p.parent)
        return True

    def event_objects(self) -> set[str]:
        base = self.class_root / "event"
        out: set[str] = set()
        for dirpath, _dirs, files in os.walk(base):
            out.update((Path(dirpath) / f).relative_to(base).as_posix() for f in files)
        return out

    def forget_class(self, name: str) -> None:
        try:
            (self.class_root / "event" / name).unlink()
        except FileNotFoundError:
            pass

    def delete(self, name: str) -> None:
        """Remove an object and its marker (retention); empty directories are left for reuse."""
        for p in (self.path(name), self._done(name)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
