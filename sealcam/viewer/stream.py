"""Playback: one camera's footage from a time on, as one fragmented-MP4 byte stream for the browser (MSE).

The stream starts at the last key fragment at or before the requested time (the signed index is used to
seek: nothing before it is read or decrypted), then runs through the following segments in sequence order,
skipping those that failed verification, and with `live` keeps following the newest segment as it grows
(records covered by a signed checkpoint only, so a few seconds behind the camera).

Media time = wall-clock time - `base_us`: each fragment's tfdt is moved so that, within a continuous run of
the recorder, media time follows the fragments' own decode times, and at a discontinuity (new init segment,
recorder restart, a gap) it is re-anchored on the fragment's capture time. Gaps in the recording are gaps in
the browser's buffered ranges, which the page steps over; wall time of any frame = base_us + currentTime.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..format.constants import PayloadKind, RecordFlag, RecordType
from ..format.decrypt import VerificationFailed
from ..format.verify import RecordInfo
from ..storage.base import StorageError
from . import mp4
from .archive import Archive, Segment

log = logging.getLogger("sealcam.viewer")
DRIFT_US = 1_500_000  # re-anchor when decode time and capture time disagree by more than this


class NothingToPlay(LookupError):
    """No verified footage of the camera at or after the requested time."""


@dataclass(slots=True)
class StreamInfo:
    base_us: int  # wall-clock time of media time 0
    start_us: int  # capture time of the first fragment (the key fragment at or before the requested time)
    codecs: str


def _playable(seg: Segment) -> list[tuple[int, RecordInfo]]:
    recs = seg.report.records[: seg.report.verified_count]
    return [(j, r) for j, r in enumerate(recs) if r.type is RecordType.CHUNK]


class Stream:
    def __init__(self, archive: Archive, handle: bytes, t_us: int, *, live: bool = False, poll_s: float = 1.0,
                 idle_s: float = 300.0, stop: threading.Event | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.archive, self.handle, self.t_us, self.live = archive, handle, t_us, live
        self.poll_s, self.idle_s = poll_s, idle_s
        self.stop = stop or threading.Event()
        self.sleep = sleep
        self.cursor: tuple[int, int] | None = None  # (seq, chained position) of the last record taken
        self.info: StreamInfo | None = None
        self._init: bytes | None = None
        self._scales: dict[int, int] = {}
        self._video_track = 0
        self._shift_s: float | None = None  # media seconds added to decode time, for the current run
        self.fragments = 0

    def open(self) -> tuple[StreamInfo, Iterator[bytes]]:
        """Decrypt up to the first fragment (so the caller knows base time and codecs), then the rest lazily."""
        gen = self._bytes()
        head = []
        for b in gen:
            head.append(b)
            if self.fragments:
                break
        if self.info is None:
            raise NothingToPlay("no verified footage of this camera at or after that time")

        def rest() -> Iterator[bytes]:
            yield from head
            yield from gen

        return self.info, rest()

    # -- which records --------------------------------------------------------------------------------------

    def _segments(self) -> list[Segment]:
        cam = self.archive.camera(self.handle)
        if cam is None:
            return []
        bad = cam.bad_names()
        return [s for s in cam.segments if s.name not in bad]

    def _start(self, segs: list[Segment]) -> tuple[Segment, int] | None:
        """Segment and chained position of the key chunk at or before t (or the first one after t)."""
        keyed = [(seg, [(j, r) for j, r in _playable(seg) if r.flags & RecordFlag.KEY and j > 0]) for seg in segs]
        keyed = [(seg, keys) for seg, keys in keyed if keys]
        for i, (seg, keys) in enumerate(keyed):
            if i + 1 < len(keyed) and keyed[i + 1][1][0][1].time_us <= self.t_us:
                continue  # a later segment starts at or before t
            before = [j for j, r in keys if r.time_us <= self.t_us]
            return seg, before[-1] if before else keys[0][0]
        return None

    def _bytes(self) -> Iterator[bytes]:
        idle_since = time.monotonic()
        while not self.stop.is_set():
            took = False
            for seg, recs in self._plan():
                try:
                    for plain in self.archive.decrypt(seg, recs):
                        self.cursor = (seg.seq, plain.index)
                        out = self._media(plain)
                        if out is not None:
                            took = True
                            yield out
                except (VerificationFailed, StorageError) as exc:
                    log.warning("viewer: playback skips %s: %s", seg.name, exc)
                    self.cursor = (seg.seq, 1 << 40)
            if took:
                idle_since = time.monotonic()
            if not self.live or time.monotonic() - idle_since > self.idle_s:
                return
            self.sleep(self.poll_s)
            segs = self._segments()
            prefix = segs[-1].name.rsplit("/", 1)[0] + "/" if segs and "/" in segs[-1].name else ""
            self.archive.poll(prefix)

    def _plan(self) -> list[tuple[Segment, list[RecordInfo]]]:
        segs = self._segments()
        plan = []
        if self.cursor is None:
            start = self._start(segs)
            if start is None:
                return []
            seg0, j0 = start
            segs = [s for s in segs if s.seq >= seg0.seq]
            self.cursor = (seg0.seq, j0 - 1)
        cseq, cj = self.cursor
        for seg in segs:
            if seg.seq < cseq:
                continue
            recs = [r for j, r in _playable(seg) if seg.seq > cseq or j > cj]
            if not recs:
                continue
            first = _playable(seg)[0]
            if first[0] == 0 and recs[0] is not first[1]:
                recs.insert(0, first[1])  # chunk 0: the init segment, needed for every entry into a segment
            plan.append((seg, recs))
        return plan

    # -- media ------------------------------------------------------------------------------------------------

    def _media(self, plain) -> bytes | None:  # noqa: ANN001 - format.decrypt.Plain
        if plain.kind is PayloadKind.VIDEO_INIT:
            init = bytes(plain.payload)
            if init != self._init:
                self._scales = mp4.timescales(init)
                self._video_track = next(iter(self._scales))
                self._codecs = mp4.codecs(init)
                self._init, self._shift_s = init, None
                self._pending_init = True
            return None
        if plain.kind is not PayloadKind.VIDEO_FRAGMENT or self._init is None:
            return None
        if self.info is None and not plain.key:
            return None  # a stream starts on a key frame
        frag = plain.payload
        if self.info is None:
            self.info = StreamInfo(plain.time_us, plain.time_us, self._codecs)
        tfdt = mp4.decode_times(frag)
        ts = self._scales.get(self._video_track, 90000)
        dec_s = tfdt.get(self._video_track, 0) / ts
        want_s = (plain.time_us - self.info.base_us) / 1e6
        if self._shift_s is None or abs(dec_s + self._shift_s - want_s) > DRIFT_US / 1e6:
            self._shift_s = want_s - dec_s  # a new run: anchor media time on this fragment's capture time
        delta = {tid: round(self._shift_s * scale) for tid, scale in self._scales.items()}
        out = bytes(mp4.shift(frag, delta))
        self.fragments += 1
        if getattr(self, "_pending_init", False):
            self._pending_init = False
            return self._init + out
        return out
