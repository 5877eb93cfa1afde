"""What a storage backend offers the uploader.

Append backends (local, SFTP, FTP) grow an object in place: `append(obj, offset, data)` checks the remote size
equals `offset` first and raises `OffsetMismatch` otherwise (the caller then reconciles), so a remote file never
gets a hole or a duplicate. S3 cannot append: `append` stores the range as a part object and `complete` writes
the whole object once the spool has it all (see s3.py). `list()` reports whole objects (name → size) only;
`list_partial()` what an append-less backend holds of unfinished objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


class BackendError(Exception):
    """A backend operation failed (connection, permission, protocol)."""


class OffsetMismatch(BackendError):
    """The remote object's size is not the offset we were about to append at."""


@runtime_checkable
class Backend(Protocol):
    name: str
    append_supported: bool  # True: objects grow in place; False: parts + a whole-object PUT at the end
    can_delete: bool  # False: WORM / append-only credentials: remote retention is the bucket's business

    def size(self, obj: str) -> int | None: ...

    def append(self, obj: str, offset: int, data: bytes) -> None: ...

    def put(self, obj: str, data: bytes) -> None: ...

    def complete(self, obj: str, path: Path, size: int) -> None:
        """The spool holds the whole object at `path` (`size` bytes); no-op for append backends."""

    def list(self) -> dict[str, int]: ...

    def list_partial(self) -> dict[str, int]:
        """Unfinished objects an append-less backend holds, as contiguous bytes from 0 (append backends: {})."""

    def delete(self, obj: str) -> None: ...

    def close(self) -> None: ...
