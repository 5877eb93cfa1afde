"""Events, thumbnails and the camera name, found by decrypting a segment's small non-key chunks.

A chunk's payload kind is encrypted (storage must not tell video from events), so the viewer decrypts the
chunks that can hold an event, a thumbnail or metadata: those without the KEY flag (video fragments cut on
key frames carry it) and at most THUMB_MAX bytes. EVENT records are UTF-8 JSON as docs/ref/container-v1.md
§3.4.1 says (`"t": "motion"`: a MotionEvent; `"t": "thumb"`: names the event_id and SHA-256 of the JPEG in the
THUMBNAIL chunk that follows), read defensively: a record that does not parse is skipped, never fatal.
Results are kept in memory: a closed segment's by its signed digest (scanned once per viewer run, whatever
re-listing or re-verification happens), an open segment's with how far it was scanned, so each poll decrypts
only the records a new checkpoint covers (and a closing segment goes on from there). Thumbnails are decrypted
again when shown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from dataclasses import dataclass, field

from ..format.constants import PayloadKind, RecordFlag, RecordType
from .archive import Archive, Segment

THUMB_MAX = (1 << 20) + 64 * 1024  # a THUMBNAIL record: JPEG up to 1 MiB plus its metadata and framing


@dataclass(slots=True)
class Found:
    events: list[dict] = field(default_factory=list)  # parsed EVENT JSON, plus "_time" (chunk capture time)
    thumbs: list[dict] = field(default_factory=list)  # {"seq", "index", "time", "event_id"?}
    camera_name: str | None = None
    thumb_events: dict[str, str] = field(default_factory=dict)  # JPEG sha256 -> event_id ("t": "thumb" records)


def split_thumbnail(payload: bytes) -> tuple[dict, bytes]:
    """(metadata, JPEG) of a THUMBNAIL payload: a bare JPEG, or JSON metadata before it (the JSON may be
    preceded by a length field and followed by a newline or NUL)."""
    i = payload.find(b"\xff\xd8\xff")
    if i < 0:
        raise ValueError("THUMBNAIL payload holds no JPEG")
    meta: dict = {}
    head = payload[:i]
    a, b = head.find(b"{"), head.rfind(b"}")
    if 0 <= a < b:
        try:
            parsed = json.loads(head[a : b + 1].decode("utf-8"))
            meta = parsed if isinstance(parsed, dict) else {}
        except (UnicodeDecodeError, ValueError):
            meta = {}
    return meta, payload[i:]


@dataclass(frozen=True, slots=True)
class _Partial:
    """What an open segment held in its first `upto` signed records (the last of which has `digest`)."""

    found: Found
    upto: int
    digest: bytes | None


class EventScanner:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._closed: dict[bytes, Found] = {}  # signed segment digest -> what it holds
        self._open: dict[str, _Partial] = {}  # object name -> what its signed records so far hold
        self._lock = threading.Lock()
        self.decrypted = 0  # chunks decrypted to look for events (for tests and the bench)

    def scan(self, seg: Segment) -> Found:
        rep = seg.report
        with self._lock:
            if rep.digest is not None and rep.digest in self._closed:
                return self._closed[rep.digest]
            recs = rep.records[: rep.verified_count]
            part = self._open.get(seg.name)
            if part is None or part.upto > len(recs) or (part.upto and recs[part.upto - 1].digest != part.digest):
                part = _Partial(Found(), 0, None)  # new, or not the records scanned before: from the start
            found = dataclasses.replace(part.found, events=list(part.found.events), thumbs=list(part.found.thumbs),
                                        thumb_events=dict(part.found.thumb_events))
            cands = [r for r in recs[part.upto :] if r.type is RecordType.CHUNK and not r.flags & RecordFlag.KEY
                     and r.length <= THUMB_MAX]
            if cands:
                self.decrypted += len(cands)
                for plain in self.archive.decrypt(seg, cands):
                    self._one(seg, plain, found)
            if rep.digest is not None:
                self._closed[rep.digest] = found
                self._open.pop(seg.name, None)
            else:
                self._open[seg.name] = _Partial(found, len(recs), recs[-1].digest if recs else None)
            return found

    @staticmethod
    def _one(seg: Segment, plain, found: Found) -> None:  # noqa: ANN001 - format.decrypt.Plain
        payload = bytes(plain.payload)
        if plain.kind is PayloadKind.EVENT:
            try:
                ev = json.loads(payload.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return
            if not isinstance(ev, dict):
                return
            t = ev.get("t")
            if t == "thumb":  # describes the THUMBNAIL chunk that follows (container-v1 §3.4.1)
                if isinstance(ev.get("sha256"), str) and isinstance(ev.get("event_id"), str):
                    found.thumb_events[ev["sha256"].lower()] = ev["event_id"]
            elif t in (None, "motion", "feed"):  # other `t` values are ignored, as the spec asks
                ev["_time"] = plain.time_us
                found.events.append(ev)
        elif plain.kind is PayloadKind.THUMBNAIL:
            try:
                meta, jpeg = split_thumbnail(payload)
            except ValueError:
                return
            t = {"seq": seg.seq, "index": plain.index, "time": plain.time_us}
            for k in ("event_id", "at_us"):
                if isinstance(meta.get(k), str | int):
                    t[k] = meta[k]
            eid = found.thumb_events.get(hashlib.sha256(jpeg).hexdigest())
            if eid is not None:
                t["event_id"] = eid
            found.thumbs.append(t)
        elif plain.kind is PayloadKind.METADATA:
            try:
                meta = json.loads(payload.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return
            if isinstance(meta, dict) and isinstance(meta.get("camera"), str):
                found.camera_name = meta["camera"][:64]

    def thumbnail(self, seg: Segment, index: int) -> bytes | None:
        recs = seg.report.records[: seg.report.verified_count]
        if not 0 <= index < len(recs) or recs[index].type is not RecordType.CHUNK:
            return None
        for plain in self.archive.decrypt(seg, [recs[index]]):
            if plain.kind is PayloadKind.THUMBNAIL:
                try:
                    return split_thumbnail(bytes(plain.payload))[1]
                except ValueError:
                    return None
        return None
