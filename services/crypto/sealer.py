"""One camera's sealing: the open SegmentWriter, its rotation, its chain state.

Every call that takes a plain message returns the sealed records it produced, in order, each as
`Out(record, done)`: the service XADDs `record` to the sealed bus, then calls `done()` (state updates that
must only happen once the record is on the sealed bus), and only then ACKs the plain message.
All bytes the writer emits while handling one plain message become ONE SealedRecord.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sealcam.bus import names
from sealcam.bus.contract import SealedRecord, VideoFragment
from sealcam.format.constants import GapReason, PayloadKind
from sealcam.format.writer import SegmentWriter, Signer

from .rotation import PendingGap, Rotator, wall_clock_us
from .state import StateStore

log = logging.getLogger("sealcam.crypto")

DEFAULT_CHECKPOINT_EVERY = 5  # no config setting: a signed checkpoint every 5 chained records


@dataclass(frozen=True, slots=True)
class Out:
    record: SealedRecord
    done: Callable[[], None] | None = None


@dataclass
class Counters:
    fragments: int = 0
    segments: int = 0
    bytes: int = 0
    gaps: int = 0
    dropped: int = 0


class CameraSealer:
    def __init__(self, camera: str, handle: bytes, signer: Signer, recipients: Sequence, store: StateStore, *,
                 segment_seconds: float, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                 clock: Callable[[], int] = wall_clock_us) -> None:
        self.camera = camera
        self.handle = handle
        self.handle_hex = handle.hex()
        self.stream = names.sealed_rec(self.handle_hex)
        self._signer = signer
        self._recipients = recipients
        self._store = store
        self._clock = clock
        self._checkpoint_every = checkpoint_every
        self.rotator = Rotator(segment_seconds, clock=clock)
        self.state = store.load()
        self.init: bytes | None = None
        self.counters = Counters()
        self.last_capture_us: int | None = None
        self._writer: SegmentWriter | None = None
        self._buf = bytearray()
        self._seq = 0
        self._offset = 0
        self._object = ""
        self._pending_gaps: list[PendingGap] = []
        self._lost_first: int | None = None  # unfinished segments from lost_first .. open_seq need a RESTART gap
        self._link = self.state.prev_link_bytes  # digest of the last closed segment (published or about to be)
        self._closing: int | None = None  # closed segment whose final record is not on the sealed bus yet
        if self.state.open_seq is not None:
            self._recover()

    # -- crash recovery ---------------------------------------------------------------------------------

    def _recover(self) -> None:
        """State says segment k was open: it is unfinished on the remote. The next segment gets k+1, links to
        the last closed digest, and declares k (and any earlier unfinished ones not yet declared) lost."""
        st = self.state
        k = st.open_seq
        first = st.lost_first if st.lost_first is not None else k
        now = self._clock()
        since = st.last_us if st.last_us is not None else now
        self._lost_first = first
        st.next_seq = max(st.next_seq, k + 1)
        self._pending_gaps.append(PendingGap(GapReason.RESTART, min(since, now), now,
                                             f"sealing service restarted; segment(s) {first}..{k} unfinished",
                                             first, k - first + 1))
        log.warning("crypto[%s]: restart after a crash: segment %s unfinished, next is %s", self.camera, k,
                    st.next_seq)

    # -- plain input ------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def fragment(self, frag: VideoFragment) -> list[Out]:
        outs: list[Out] = []
        plan = self.rotator.fragment(frag.seq, frag.capture_us, frag.keyframe, frag.kind)
        if plan.close_before and self._writer is not None:
            log.info("crypto[%s]: closing segment %s: %s", self.camera, self._seq, plan.reason)
            outs += self.close()
        if plan.gap is not None:
            log.warning("crypto[%s]: %s", self.camera, plan.gap.detail)
            self._add_gap(plan.gap)
        if frag.kind == "init":
            self.init = frag.data
            return outs
        if self._writer is None:
            if self.init is None:
                self.counters.dropped += 1
                self.rotator.closed()
                self._pending_gaps.append(PendingGap(GapReason.DROPPED, frag.capture_us, frag.capture_us,
                                                     f"fragment {frag.seq} dropped: no init segment yet"))
                log.warning("crypto[%s]: fragment %s dropped: no init segment yet", self.camera, frag.seq)
                return outs
            self._open(frag.capture_us)
        self._writer.add_chunk(frag.data, kind=PayloadKind.VIDEO_FRAGMENT, capture_us=frag.capture_us,
                               key=frag.keyframe)
        self.counters.fragments += 1
        self.last_capture_us = frag.capture_us
        self.state.last_us = frag.capture_us
        outs.append(self._flush(final=False, done=self._first_done()))
        return outs

    def feed_lost(self, at_us: int) -> None:
        log.warning("crypto[%s]: feed lost", self.camera)
        self.rotator.feed_lost(at_us)

    def feed_back(self, at_us: int, detail: str = "") -> list[Out]:
        gap = self.rotator.feed_back(at_us, detail)
        if gap is None:
            return []
        log.info("crypto[%s]: feed back; sealing a FEED_LOST gap", self.camera)
        self._add_gap(gap)
        return [self._flush(final=False)] if self._writer is not None else []

    def tick(self) -> list[Out]:
        if self._writer is not None and self.rotator.tick():
            log.info("crypto[%s]: closing segment %s: open too long (safety cap)", self.camera, self._seq)
            return self.close()
        return []

    # -- segments ---------------------------------------------------------------------------------------

    def _open(self, capture_us: int) -> None:
        st = self.state
        self._seq = seq = st.next_seq
        st.open_seq, st.next_seq = seq, seq + 1
        # a crash before the previous segment's final record is out makes that one unfinished too
        st.lost_first = min((x for x in (self._lost_first, self._closing) if x is not None), default=None)
        self._store.save(st)  # before any byte of segment seq leaves: a crash from here on is declared later
        self._offset = 0
        self._object = names.object_name(self.handle_hex, seq, self._clock())
        self._writer = SegmentWriter(self._buf.extend, signer=self._signer, recipients=self._recipients,
                                     camera_handle=self.handle, seq=seq, prev_link=self._link,
                                     checkpoint_every=self._checkpoint_every, clock=self._clock)
        self._writer.add_chunk(self.init, kind=PayloadKind.VIDEO_INIT, capture_us=capture_us, key=True)
        for g in self._pending_gaps:
            self._write_gap(g)
        self._pending_gaps.clear()
        log.info("crypto[%s]: opened segment %s", self.camera, seq)

    def _add_gap(self, gap: PendingGap) -> None:
        if self._writer is not None:
            self._write_gap(gap)
        else:
            self._pending_gaps.append(gap)

    def _write_gap(self, g: PendingGap) -> None:
        self._writer.add_gap(g.reason, from_us=g.from_us, until_us=max(g.from_us, g.until_us),
                             lost_first_seq=g.lost_first_seq, lost_count=g.lost_count,
                             detail=g.detail.encode()[:256].decode("utf-8", "ignore"))
        self.counters.gaps += 1

    def _first_done(self) -> Callable[[], None] | None:
        if self._offset != 0 or self._lost_first is None:
            return None

        def done() -> None:  # the RESTART gap is on the sealed bus now: stop carrying it in the state
            self._lost_first = None
            self.state.lost_first = None
            self._store.save(self.state)
        return done

    def close(self) -> list[Out]:
        """Close the open segment (final chunk, INDEX, signed TRAILER) into one final record."""
        if self._writer is None:
            return []
        sealed = self._writer.close()
        self._writer = None
        self.rotator.closed()
        seq = self._seq
        self._link = sealed.digest
        self._closing = seq

        def done() -> None:  # only once the final record is on the sealed bus
            st = self.state
            st.prev_link = sealed.digest.hex()
            if st.open_seq == seq:
                st.open_seq = None
            if st.lost_first == seq:
                st.lost_first = None
            self._closing = None
            self._store.save(st)
            self.counters.segments += 1
        return [self._flush(final=True, done=done)]

    def abort(self) -> None:
        """Stop without closing (like a crash: the state keeps open_seq, the next start declares the gap)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
            self._buf.clear()

    def _flush(self, *, final: bool, done: Callable[[], None] | None = None) -> Out:
        data = bytes(self._buf)
        self._buf.clear()
        rec = SealedRecord(self.handle_hex, self._seq, self._offset, data, final, self._object)
        self._offset += len(data)
        self.counters.bytes += len(data)
        return Out(rec, done)
