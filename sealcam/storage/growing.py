"""The ciphertext of an object still being written, held in memory and extended as it grows.

Each poll fetches the bytes from some offset on (the new tail, plus the last record already checked, which the
verifier compares again) and `put`s them: the pieces before that offset are kept, never copied again. `file()`
is a seekable read-only snapshot: later `put`s do not change what an open snapshot reads (pieces are immutable
`bytes`, and `put` builds a new list), so playback can read while the next poll extends the object.
"""

from __future__ import annotations

import bisect
import io


class GrowingObject:
    def __init__(self, name: str) -> None:
        self.name = name
        self._starts: list[int] = []  # offset of each piece
        self._pieces: list[bytes] = []
        self.size = 0

    def put(self, offset: int, data: bytes) -> None:
        """Replace everything from `offset` on with `data` (offset <= size)."""
        if not 0 <= offset <= self.size:
            raise ValueError(f"{self.name}: put at {offset} outside 0..{self.size}")
        i = bisect.bisect_right(self._starts, offset) - 1
        starts, pieces = self._starts[: max(i, 0)], self._pieces[: max(i, 0)]
        if i >= 0 and offset > self._starts[i]:
            starts.append(self._starts[i])
            pieces.append(self._pieces[i][: offset - self._starts[i]])
        if data:
            starts.append(offset)
            pieces.append(bytes(data))
        self._starts, self._pieces, self.size = starts, pieces, offset + len(data)

    def file(self) -> PiecesFile:
        return PiecesFile(self._starts, self._pieces, self.size)


class PiecesFile(io.RawIOBase):
    """A read-only seekable file over a list of contiguous pieces (a snapshot of a GrowingObject)."""

    def __init__(self, starts: list[int], pieces: list[bytes], size: int) -> None:
        super().__init__()
        self._starts, self._pieces, self.size = starts, pieces, size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.pos = base + offset
        return self.pos

    def read(self, n: int = -1) -> bytes:
        start = self.pos
        end = self.size if n is None or n < 0 else min(self.size, start + n)
        if end <= start:
            return b""
        i = bisect.bisect_right(self._starts, start) - 1
        out = []
        pos = start
        while pos < end:
            p0, piece = self._starts[i], self._pieces[i]
            take = piece[pos - p0 : end - p0]
            out.append(take)
            pos += len(take)
            i += 1
        self.pos = end
        return out[0] if len(out) == 1 else b"".join(out)

    def readinto(self, b) -> int:  # noqa: ANN001 - any writable buffer
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)
