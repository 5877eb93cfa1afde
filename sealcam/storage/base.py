"""What the owner's side needs from storage: list objects, ranged reads. Read-only by construction.

`RangeFile` turns a reader's ranged reads into a seekable binary file, so the container library
(`sealcam.format`) parses remote objects with the same code as local files, reading only the byte ranges it
asks for (a seek reads the signed tail, the index and the chunks it needs, never what precedes them).
"""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """Listing or reading storage failed (connection, permission, missing object). The message names where."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str  # relative to the storage root, '/'-separated
    size: int  # bytes readable now (for a live object: the contiguous prefix written so far)
    live: bool = False  # still being written (S3: only part objects exist yet)


@runtime_checkable
class StorageReader(Protocol):
    url: str  # for messages; never holds a secret

    def list(self, prefix: str = "", *, start_after: str | None = None) -> dict[str, ObjectInfo]:
        """Objects whose name starts with `prefix` (a folder such as `HANDLE/`, or "" for all) and, with
        `start_after`, sorts after that name (S3 lists only those; the others filter a folder's listing)."""

    def read(self, name: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer only at the end of the object)."""

    def close(self) -> None: ...


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over one object, fetched by ranged reads with read-ahead.

    Keeps the last few fetched windows (ciphertext only). `size` is fixed when opened: a live object is
    reopened with its new size after a new listing.
    """

    def __init__(self, reader: StorageReader, name: str, size: int, *, readahead: int = 256 * 1024,
                 windows: int = 8) -> None:
        super().__init__()
        self.reader, self.name, self.size = reader, name, size
        self.pos = 0
        self.readahead = readahead
        self._windows: OrderedDict[int, bytes] = OrderedDict()
        self._max = windows
        self.requests = 0  # ranged reads made (for tests and the bench)
        self.fetched = 0  # bytes fetched

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position in {self.name}")
        self.pos = base + offset
        return self.pos

    def _cached(self, start: int, end: int) -> bytes | None:
        for w0, data in self._windows.items():
            if w0 <= start and end <= w0 + len(data):
                self._windows.move_to_end(w0)
                return data[start - w0 : end - w0]
        return None

    def read(self, n: int = -1) -> bytes:
        start = self.pos
        end = self.size if n is None or n < 0 else min(self.size, start + n)
        if end <= start:
            return b""
        data = self._cached(start, end)
        if data is None:
            want = max(end - start, min(self.readahead, self.size - start))
            got = self.reader.read(self.name, start, want)
            self.requests += 1
            self.fetched += len(got)
            self._windows[start] = got
            while len(self._windows) > self._max:
                self._windows.popitem(last=False)
            data = got[: end - start]
        self.pos = start + len(data)
        return data

    def readinto(self, b) -> int:  # noqa: ANN001 - any writable buffer
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)


