"""The owner's view of one storage: segments grouped per camera and verified, data keys held in memory, and
records decrypted on demand. Nothing decrypted is written anywhere; ciphertext is read by ranged requests.

Verification has two depths. `refresh()` checks each closed segment from its signed header and tail
(`light_report`: signature, index, gap records; no chunk is read), anything else fully (`verify_segment`), then
the chains between segments (`check_chains`). `deep_verify()` (run in the background by the viewer) re-checks
light-checked segments fully, so a modified chunk shows on the timeline before anyone plays it; playback
checks every record against the signed index anyway and reports a failure it meets (`runtime_problems`).
An object still being written is kept in memory and verified incrementally (`format.follow`): a poll fetches
and checks only the new bytes, plus the last record checked, compared again to see the object did not change.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from ..format import problems as P
from ..format.aead import wipe
from ..format.chain import HonestGap, check_chains
from ..format.constants import RecordFlag, RecordType
from ..format.decrypt import Plain, VerificationFailed, iter_plain, light_report, unwrap_key
from ..format.follow import IncrementalVerifier
from ..format.verify import RecordInfo, SegmentReport, verify_segment
from ..storage.base import ObjectInfo, RangeFile, StorageError, StorageReader
from ..storage.growing import GrowingObject

log = logging.getLogger("sealcam.viewer")

#: Object names the uploader writes (sealcam.bus.names.object_name): HANDLE/SEQ-YYYYMMDDHH.seal
OBJECT_NAME = re.compile(r"^(?:.*/)?[0-9a-f]{16,64}/[0-9]{12}-[0-9]{10}\.seal$")
#: Problems of the newest segment of a camera that only mean "still being written".
OPEN_KINDS = frozenset({P.MISSING_FINAL, P.MISSING_TRAILER, P.UNVERIFIED, P.TRUNCATED})
DEEP_READAHEAD = 4 << 20


@dataclass(slots=True)
class Segment:
    name: str
    size: int
    report: SegmentReport
    full: bool  # verified by reading every record (else from the signed tail only)

    @property
    def handle(self) -> bytes:
        return self.report.header.camera_handle

    @property
    def seq(self) -> int:
        return self.report.header.seq

    @property
    def closed(self) -> bool:
        return self.report.digest is not None

    def playable(self) -> list[RecordInfo]:
        """Chunks a signature covers (all of a closed, intact segment; up to the last checkpoint otherwise)."""
        return [r for r in self.report.records[: self.report.verified_count] if r.type is RecordType.CHUNK]

    def times(self) -> list[int]:
        return [r.time_us for r in self.report.records if r.type is RecordType.CHUNK]


@dataclass(slots=True)
class Camera:
    handle: bytes
    segments: list[Segment] = field(default_factory=list)  # by seq
    problems: list[P.Problem] = field(default_factory=list)
    gaps: list[HonestGap] = field(default_factory=list)
    open_segment: str | None = None  # newest segment, still being written (its open-state problems not shown)

    def bad_names(self) -> set[str]:
        return {p.file for p in self.problems if p.file}


@dataclass(slots=True)
class _Live:
    """An object being written: its bytes so far (ciphertext, memory only) and the verifier's state."""

    verifier: IncrementalVerifier
    data: GrowingObject


class Archive:
    def __init__(self, reader: StorageReader, identities: Sequence, *, signer: bytes | None = None) -> None:
        self.reader = reader
        self.identities = list(identities)
        self.signer = signer
        self._segs: dict[str, Segment] = {}
        self._live: dict[str, _Live] = {}  # unclosed objects: only new bytes are fetched and verified
        self._keys: dict[bytes, bytearray] = {}  # segment id -> data key (memory only, wiped by close())
        self._lock = threading.RLock()
        self.cameras: dict[bytes, Camera] = {}
        self.runtime_problems: list[P.Problem] = []
        self.generation = 0  # bumped whenever verification results change

    # -- listing and verification ------------------------------------------------------------------------

    def refresh(self, prefix: str = "", *, start_after: str | None = None) -> None:
        """List storage (all, or one camera's folder `HANDLE/`) and verify what is new or has grown.

        `start_after`: list only the objects named after this one (the others are known and closed)."""
        listing = {n: i for n, i in self.reader.list(prefix, start_after=start_after).items()
                   if OBJECT_NAME.match(n)}
        with self._lock:
            changed = False
            for name in [n for n in self._segs if n.startswith(prefix) and n not in listing
                         and (start_after is None or n > start_after)]:
                del self._segs[name]  # removed by retention
                self._live.pop(name, None)
                changed = True
            for name, info in sorted(listing.items()):
                old = self._segs.get(name)
                if old is not None and old.size == info.size:
                    continue
                seg = self._verify(info)
                if seg is not None:
                    self._segs[name] = seg
                    changed = True
            if changed:
                self._regroup()

    def poll(self, prefix: str) -> None:
        """Refresh one camera's folder, listing only from its newest closed segment on (live follow)."""
        with self._lock:
            closed = [n for n, s in self._segs.items() if n.startswith(prefix) and s.closed and n not in self._live]
        self.refresh(prefix, start_after=max(closed, default=None))

    def _verify(self, info: ObjectInfo) -> Segment | None:
        live = self._live.get(info.name)
        if live is None and not info.live:
            rep = light_report(info.name, signer=self.signer, fileobj=RangeFile(self.reader, info.name, info.size))
            if rep is not None:
                return Segment(info.name, info.size, rep, full=False)
        if live is not None and info.size >= live.data.size:
            # fetch the new tail and, again, the last record checked: the verifier compares it with what it saw
            at = live.verifier.check_from
            live.data.put(at, self.reader.read(info.name, at, info.size - at))
            restarts = live.verifier.restarts
            rep = live.verifier.feed(live.data.file())
            if live.verifier.restarts == restarts:
                return self._verified(info, live, rep)
            self._changed(info, "a record already verified differs on storage now")
        elif live is not None:
            self._changed(info, f"the object shrank from {live.data.size} to {info.size} bytes")
        live = _Live(IncrementalVerifier(info.name, signer=self.signer), GrowingObject(info.name))
        live.data.put(0, self.reader.read(info.name, 0, info.size))
        return self._verified(info, live, live.verifier.feed(live.data.file()))

    def _verified(self, info: ObjectInfo, live: _Live, rep: SegmentReport) -> Segment:
        if rep.header is None:
            log.warning("viewer: %s is not a sealcam segment: %s", info.name,
                        rep.problems[0].message if rep.problems else "no header")
        if rep.trailer is None:
            self._live[info.name] = live  # still growing: next time only the new tail is fetched and verified
        else:
            self._live.pop(info.name, None)
        return Segment(info.name, info.size, rep, full=True)

    def _changed(self, info: ObjectInfo, what: str) -> None:
        """Bytes the viewer verified (and may have shown) are gone from storage: a problem, not just a reload."""
        log.warning("viewer: %s changed while being written (%s): verifying it again from its first byte",
                    info.name, what)
        p = P.Problem(P.MODIFIED, f"changed on storage while being followed: {what}", file=info.name)
        if p not in self.runtime_problems:
            self.runtime_problems.append(p)

    def _regroup(self) -> None:
        reports = [s.report for s in self._segs.values()]
        setrep = check_chains(reports)
        cams: dict[bytes, Camera] = {}
        for s in sorted(self._segs.values(), key=lambda s: (s.report.header.seq, s.name) if s.report.header else
                        (-1, s.name)):
            if s.report.header is None:
                continue
            cams.setdefault(s.handle, Camera(s.handle)).segments.append(s)
        by_file = {s.name: s for s in self._segs.values()}
        for cam in cams.values():
            newest = cam.segments[-1]
            if newest.report.trailer is None and {p.kind for p in newest.report.problems} <= OPEN_KINDS:
                cam.open_segment = newest.name
        for p in setrep.problems:
            seg = by_file.get(p.file or "")
            if seg is None or seg.report.header is None:
                cams.setdefault(b"", Camera(b"")).problems.append(p)
                continue
            cam = cams[seg.handle]
            if p.file == cam.open_segment and p.kind in OPEN_KINDS:
                continue
            cam.problems.append(p)
        for p in self.runtime_problems:
            seg = by_file.get(p.file or "")
            if seg is not None and seg.report.header is not None and p not in cams[seg.handle].problems:
                cams[seg.handle].problems.append(p)
        for g in setrep.gaps:
            if g.camera_handle in cams:
                cams[g.camera_handle].gaps.append(g)
        self.cameras = cams
        self.generation += 1

    def deep_verify(self, stop: threading.Event | None = None) -> int:
        """Fully verify every segment checked only from its tail so far. Returns how many were checked."""
        n = 0
        with self._lock:
            todo = [s for s in self._segs.values() if not s.full]
        for seg in todo:
            if stop is not None and stop.is_set():
                break
            f = RangeFile(self.reader, seg.name, seg.size, readahead=DEEP_READAHEAD, windows=2)
            rep = verify_segment(seg.name, signer=self.signer, fileobj=f)
            n += 1
            with self._lock:
                if self._segs.get(seg.name) is seg:
                    self._segs[seg.name] = Segment(seg.name, seg.size, rep if not rep.ok else seg.report, True)
                    if not rep.ok:
                        log.warning("viewer: %s fails full verification: %s", seg.name, rep.problems[0].kind)
                        self._regroup()
        return n

    # -- access ------------------------------------------------------------------------------------------

    def camera(self, handle: bytes) -> Camera | None:
        with self._lock:
            return self.cameras.get(handle)

    def segment(self, name: str) -> Segment | None:
        with self._lock:
            return self._segs.get(name)

    def fileobj(self, seg: Segment) -> BinaryIO:
        live = self._live.get(seg.name)
        if live is not None and live.data.size >= seg.size:
            return live.data.file()  # a snapshot: the next poll extending the object does not disturb it
        return RangeFile(self.reader, seg.name, seg.size, readahead=1 << 20)

    def key(self, seg: Segment) -> bytearray:
        sid = seg.report.header.segment_id
        with self._lock:
            k = self._keys.get(sid)
            if k is None:
                k = self._keys[sid] = unwrap_key(seg.report, self.identities)
            return k

    def decrypt(self, seg: Segment, records: list[RecordInfo]) -> Iterator[Plain]:
        """Decrypt `records` of `seg` (each checked against the signed index or checkpoint first)."""
        key = self.key(seg)
        try:
            yield from iter_plain(seg.report, key, records, fileobj=self.fileobj(seg))
        except VerificationFailed as exc:
            with self._lock:
                self.runtime_problems.extend(p for p in exc.problems if p not in self.runtime_problems)
                self._regroup()
            raise
        except StorageError:
            raise

    def close(self) -> None:
        with self._lock:
            for k in self._keys.values():
                wipe(k)
            self._keys.clear()
            self._live.clear()
        self.reader.close()


def key_records(records: list[RecordInfo]) -> list[RecordInfo]:
    return [r for r in records if r.flags & RecordFlag.KEY]
