"""Verifying a segment that is still being written, poll after poll, without re-checking what was checked.

`IncrementalVerifier.feed(f)` returns the report `verify_segment` gives for the bytes `f` holds now, but
reads and hashes only what was appended since the previous call: the records are parsed by the same reader
(`reader.scan`, from where the last call stopped) and checked by the same per-record steps (`verify._Walker`:
chain, checkpoints, splices, record order and types). The checks that need the whole file (final chunk,
unsigned records, trailer and index, record order) run on a copy of the state, so the next call goes on from
where this one stopped. A record not yet complete at the end is reported as verify_segment reports it and
parsed again next time.

An object being written only grows. Each call first re-reads the last chained record it checked and what
follows it (one chunk and a checkpoint, not the prefix) and compares them with the bytes it checked; when they
differ or the object shrank, the earlier bytes are not the ones
verified: it starts again from the first byte (counted in `restarts`, so a caller that caches the bytes knows
to fetch them all again). A change further back in the prefix is not seen here; the signed trailer and the
full verification of the closed segment see it.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import BinaryIO

from .constants import MAGIC, RecordType
from .errors import FormatError
from .reader import Damage, read_magic, scan
from .verify import SegmentReport, _check_detached_keys, _default_keys_path, _Walker


class IncrementalVerifier:
    """verify_segment for an object that grows between calls (see the module docstring)."""

    def __init__(self, path: str | Path, *, signer: bytes | None = None, keys_path: str | Path | None = None) -> None:
        self.path, self.signer = str(path), signer
        self.keys_path = Path(keys_path) if keys_path else _default_keys_path(Path(path))
        self.restarts = 0  # times the checked prefix was found changed and verification began again
        self.scanned = 0  # bytes read by scans (not counting the one-record re-check), for tests and benches
        self._reset()

    def _reset(self) -> None:
        self._walker = _Walker(SegmentReport(self.path), self.signer)
        self._pos = 0  # where the next scan starts; 0: the magic is not checked yet
        self._held: Damage | None = None  # an incomplete record at the end, parsed again next time
        self._anchor = 0  # the last chained record consumed starts here: bytes from here to _pos are kept
        self._kept: list[bytes] = []  # ... in _kept, to compare with what the next call finds there
        self._fatal: SegmentReport | None = None  # bad magic: verify_segment stops there too
        self._stopped = False  # no HEADER could be decoded: nothing after it is checked
        self.size = 0

    @property
    def check_from(self) -> int:
        """Offset of the last record checked: a caller caching the object supplies fresh bytes from here on."""
        return self._anchor

    def feed(self, f: BinaryIO) -> SegmentReport:
        """The report for what `f` holds now (an extension of what earlier calls saw, or it starts again)."""
        size = f.seek(0, 2)
        if self._pos and (size < self.size or not self._prefix_intact(f)):
            self.restarts += 1
            self._reset()
        self.size = size
        if self._pos == 0:
            f.seek(0)
            try:
                read_magic(f)
            except FormatError as exc:
                rep = SegmentReport(self.path, size=size)
                rep.add(exc.kind, exc.message, offset=exc.offset)
                if size >= len(MAGIC):  # a whole, wrong magic: nothing more will be read (as verify_segment)
                    self._fatal, self._pos, self._kept = rep, len(MAGIC), [_read_at(f, 0, len(MAGIC))]
                return rep
            self._pos, self._kept = len(MAGIC), [MAGIC]
        if self._fatal is not None:
            return dataclasses.replace(self._fatal, size=size, problems=list(self._fatal.problems))
        if not self._stopped:
            self._scan(f)
        return self._report()

    def _prefix_intact(self, f: BinaryIO) -> bool:
        return _read_at(f, self._anchor, self._pos - self._anchor) == b"".join(self._kept)

    def _scan(self, f: BinaryIO) -> None:
        self._held = None
        start = self._pos
        for item in scan(f, self._pos):
            if isinstance(item, Damage) and item.resumed_at is None:
                self._held = item  # the end of what is written so far (or damage up to it): again next time
                break
            if not self._walker.step(item):
                self._stopped = True
                break
            if isinstance(item, Damage):  # damaged bytes are not kept for the comparison
                self._pos = self._anchor = item.resumed_at
                self._kept = []
                continue
            self._pos = item.offset + item.header.total
            if item.header.type in (RecordType.CHUNK, RecordType.GAP):
                self._anchor, self._kept = item.offset, []
            self._kept.append(bytes(item.data))
        self.scanned += f.tell() - start

    def _report(self) -> SegmentReport:
        """Finish a copy of the walker's state, as verify_segment would finish on these bytes."""
        w = copy.copy(self._walker)
        r = w.rep
        w.rep = dataclasses.replace(r, records=list(r.records), gaps=list(r.gaps), problems=list(r.problems),
                                    damaged=list(r.damaged), size=self.size)
        w.chains, w.gap_records = list(w.chains), list(w.gap_records)
        if self._held is not None and not self._stopped:
            w.step(self._held)
        w.finish()
        rep = w.rep
        if rep.header and rep.header.keys_detached:
            _check_detached_keys(rep, self.keys_path)
        return rep


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)
