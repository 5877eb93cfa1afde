"""One camera's sealing: the open SegmentWriter, its rotation, its chain state.

Every call that takes a plain message returns the sealed records it produced, in order, each as
`Out(record, done)`: the service XADDs `record` to the sealed bus, then calls `done()` (state updates that
must only happen once the record is on the sealed bus), and only then ACKs the plain message.
All bytes the writer emits while handling one plain message become one SealedRecord (several only when a
pre-roll flush is larger than FLUSH_BYTES).

What is kept follows the camera's recording mode (`modes.py`): in `events` mode fragments wait in a RAM-only
pre-roll ring and are sealed only inside event windows; the time between windows is declared by a signed
NOT_RECORDING gap in the next segment. Events (MotionEvent) become EVENT chunks (UTF-8 JSON) and thumbnails a
THUMBNAIL chunk (the JPEG) right after an EVENT chunk describing it (`"t": "thumb"`, event id, time, SHA-256 of
the JPEG). With no segment open, such a record gets a segment of its own (the init segment, the record).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sealcam.bus import names
from sealcam.bus.contract import TAMPER_LABELS, MotionEvent, SealedRecord, Thumbnail, VideoFragment
from sealcam.format.constants import GapReason, PayloadKind
from sealcam.format.writer import SegmentWriter, Signer

from .modes import Keeper, ModeSettings, PreRoll
from .rotation import PendingGap, Rotator, wall_clock_us
from .state import StateStore

log = logging.getLogger("sealcam.crypto")

DEFAULT_CHECKPOINT_EVERY = 5  # no config setting: a signed checkpoint every 5 chained records
FLUSH_BYTES = 8 << 20  # a pre-roll flush goes out in records of about this size (SealedRecord limit: 33 MiB)


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
    held: int = 0  # fragments held in the pre-roll ring (events mode)
    events: int = 0  # EVENT records sealed
    thumbnails: int = 0
    tamper: dict[str, int] = field(default_factory=dict)  # tamper label -> events started


@dataclass
class Tamper:
    """Open tamper events of one camera (non-sensitive: forwarded to the watchdog as health counters)."""

    open: dict[str, str] = field(default_factory=dict)  # event id -> label

    def update(self, ev: MotionEvent, counters: Counters) -> None:
        if ev.kind != "tamper":
            return
        if ev.phase == "end":
            self.open.pop(ev.event_id, None)
        elif ev.event_id not in self.open:
            self.open[ev.event_id] = ev.label
            counters.tamper[ev.label] = counters.tamper.get(ev.label, 0) + 1

    def active(self, label: str) -> bool:
        return label in self.open.values()


class CameraSealer:
    def __init__(self, camera: str, handle: bytes, signer: Signer, recipients: Sequence, store: StateStore, *,
                 segment_seconds: float, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                 clock: Callable[[], int] = wall_clock_us, mode: ModeSettings | None = None) -> None:
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
        self._chunk_us: int | None = None  # time of the open segment's latest chunk
        self._seq = 0
        self._offset = 0
        self._object = ""
        self._pending_gaps: list[PendingGap] = []
        self._lost_first: int | None = None  # unfinished segments from lost_first .. open_seq need a RESTART gap
        self._link = self.state.prev_link_bytes  # digest of the last closed segment (published or about to be)
        self._closing: int | None = None  # closed segment whose final record is not on the sealed bus yet
        self.keeper = Keeper(mode or ModeSettings())
        self.ring: PreRoll[VideoFragment] = PreRoll(self.keeper.ring_keep_us)  # RAM only, never on disk
        self.tamper = Tamper()
        self.feed_is_lost = False
        self._class = "continuous"  # retention class of the open segment
        # events mode: capture time since which nothing was kept on purpose (a NOT_RECORDING gap opens the next)
        self._idle_since: int | None = self.state.last_us if self.keeper.mode == "events" else None
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
        if self.keeper.mode == "events":
            # the crashed segment was recording (an event window): the RESTART gap declares it up to now, and
            # only time after the restart may be declared NOT_RECORDING (never the lost segment's)
            self._idle_since = now
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
        if plan.gap is not None or plan.close_before:
            self.ring.clear()  # a discontinuity: the pre-roll cannot span it
        if plan.gap is not None:
            if self.keeper.recording:
                log.warning("crypto[%s]: %s", self.camera, plan.gap.detail)
                self._add_gap(plan.gap)  # else: lost while nothing was being kept anyway (NOT_RECORDING covers it)
        if frag.kind == "init":
            self.init = frag.data
            return outs
        self.last_capture_us = frag.capture_us
        d = self.keeper.fragment(frag.capture_us)
        if d.stop:
            log.info("crypto[%s]: event window over: not recording until the next event", self.camera)
            outs += self.close()
            self._idle_since = self.state.last_us if self.state.last_us is not None else frag.capture_us
        if not d.keep:
            self.ring.push(frag)
            self.counters.held += 1
            return outs
        if d.in_event and self.keeper.mode == "both":
            self._class = "event"
        if self._writer is not None and self._chunk_us is not None and frag.capture_us < self._chunk_us:
            outs += self.close()  # an event record stamped ahead of this fragment: never go back in a segment
        if self._add_fragment(frag):
            outs.append(self._flush(final=False, done=self._first_done()))
        return outs

    def _add_fragment(self, frag: VideoFragment) -> bool:
        """Seal one fragment into the open segment (opening one if needed). False when it had to be dropped."""
        if self._writer is None:
            if self.init is None:
                self.counters.dropped += 1
                self.rotator.closed()
                self._pending_gaps.append(PendingGap(GapReason.DROPPED, frag.capture_us, frag.capture_us,
                                                     f"fragment {frag.seq} dropped: no init segment yet"))
                log.warning("crypto[%s]: fragment %s dropped: no init segment yet", self.camera, frag.seq)
                return False
            self._open(frag.capture_us)
        self._chunk(frag.data, PayloadKind.VIDEO_FRAGMENT, frag.capture_us, frag.keyframe)
        self.counters.fragments += 1
        self.state.last_us = frag.capture_us
        return True

    # -- events and thumbnails --------------------------------------------------------------------------

    def event(self, ev: MotionEvent) -> list[Out]:
        """Seal a MotionEvent as an EVENT chunk; in events mode a start first seals the pre-roll."""
        self.tamper.update(ev, self.counters)
        outs: list[Out] = []
        if self.keeper.event(ev.event_id, ev.phase, ev.start_us, ev.at_us, ev.end_us):
            log.info("crypto[%s]: event %s (%s) starts: sealing the pre-roll", self.camera, ev.event_id[:8],
                     ev.label)
            for i, frag in enumerate(self.ring.take_from(self.keeper.ring_from_us)):
                if not self._add_fragment(frag):
                    continue
                if i == 0:
                    self.rotator.opened(frag.capture_us)  # the segment starts with the pre-roll
                if len(self._buf) >= FLUSH_BYTES:
                    outs.append(self._flush(final=False, done=self._first_done()))
        if self.keeper.mode == "both" and self.keeper.window is not None:
            self._class = "event"
        body = {"t": "motion", "camera": ev.camera, "event_id": ev.event_id, "phase": ev.phase, "kind": ev.kind,
                "at_us": ev.at_us, "start_us": ev.start_us, "end_us": ev.end_us, "label": ev.label,
                "score": ev.score, "detail": json.loads(ev.detail)}
        outs += self._records([(_json(body), PayloadKind.EVENT)], ev.at_us)
        self.counters.events += 1
        return outs

    def thumbnail(self, th: Thumbnail) -> list[Out]:
        """Seal a thumbnail: an EVENT chunk naming it (event id, time, SHA-256), then the JPEG as THUMBNAIL."""
        desc = {"t": "thumb", "camera": th.camera, "event_id": th.event_id, "at_us": th.at_us,
                "bytes": len(th.data), "sha256": hashlib.sha256(th.data).hexdigest()}
        outs = self._records([(_json(desc), PayloadKind.EVENT), (th.data, PayloadKind.THUMBNAIL)], th.at_us)
        self.counters.thumbnails += 1
        return outs

    def _records(self, items: list[tuple[bytes, PayloadKind]], at_us: int) -> list[Out]:
        """Seal non-video chunks into the open segment, or into a segment of their own when none is open.
        Their chunk time is the last sealed capture time (so later fragments never go back in time); the true
        time is inside the JSON."""
        outs: list[Out] = []
        own = self._writer is None
        t = self.last_capture_us if self.last_capture_us is not None else at_us
        if own:
            if self.keeper.mode != "continuous":
                self._class = "event"
            self._open(t)
            if self._chunk_us is None:
                self._chunk_us = t
        for payload, kind in items:
            self._chunk(payload, kind, self._chunk_us)
        if own and not self.keeper.recording:  # events mode between windows: close it right away
            outs += self.close()
            self._idle_since = max(self._idle_since or t, t)
        else:
            outs.append(self._flush(final=False, done=self._first_done()))
        return outs

    def _chunk(self, payload: bytes, kind: PayloadKind, t: int, key: bool = False) -> None:
        self._writer.add_chunk(payload, kind=kind, capture_us=t, key=key)
        self._chunk_us = t if self._chunk_us is None else max(self._chunk_us, t)

    def feed_state(self, lost: bool) -> None:
        self.feed_is_lost = lost

    def health_counters(self) -> dict[str, int]:
        """Non-sensitive per-camera figures for sealed:health (no labels of objects, no content)."""
        c = self.counters
        out = {"segments_sealed": c.segments, "bytes_sealed": c.bytes, "fragments": c.fragments, "gaps": c.gaps,
               "dropped": c.dropped, "events": c.events, "thumbnails": c.thumbnails,
               "recording": int(self.keeper.recording), "feed_lost": int(self.feed_is_lost)}
        for label in TAMPER_LABELS:
            out[f"tamper_{label}"] = c.tamper.get(label, 0)
            out[f"tamper_{label}_active"] = int(self.tamper.active(label))
        return out

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
        self._chunk_us = None
        if self.init is not None:
            self._chunk(self.init, PayloadKind.VIDEO_INIT, capture_us, True)
        if self._idle_since is not None:
            since, self._idle_since = self._idle_since, None
            if capture_us > since:
                self._pending_gaps.append(PendingGap(GapReason.NOT_RECORDING, since, capture_us,
                                                     "recording mode events: nothing kept between events"))
        for g in self._pending_gaps:
            self._write_gap(g)
        self._pending_gaps.clear()
        if self.keeper.mode == "events":
            self._class = "event"
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
        cls, self._class = self._class, "continuous"
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
        return [self._flush(final=True, done=done, retention=cls)]

    def abort(self) -> None:
        """Stop without closing (like a crash: the state keeps open_seq, the next start declares the gap)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
            self._buf.clear()

    def _flush(self, *, final: bool, done: Callable[[], None] | None = None, retention: str | None = None) -> Out:
        data = bytes(self._buf)
        self._buf.clear()
        rec = SealedRecord(self.handle_hex, self._seq, self._offset, data, final, self._object,
                           retention or self._class)
        self._offset += len(data)
        self.counters.bytes += len(data)
        return Out(rec, done)


def _json(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
