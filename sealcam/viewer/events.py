"""Events, thumbnails and the camera name, found by decrypting a segment's small non-key chunks.

A chunk's payload kind is encrypted (storage must not tell video from events), so the viewer decrypts the
chunks that can hold an event, a thumbnail or metadata: those without the KEY flag (video fragments cut on
key frames carry it) and at most THUMB_MAX bytes. EVENT records are UTF-8 JSON as docs/ref/container-v1.md
§3.4.1 says (`"t": "motion"`: a MotionEvent; `"t": "thumb"`: names the event_id and SHA-256 of the JPEG in the
THUMBNAIL chunk that follows), read defensively: a record that does not parse is skipped, never fatal.
Results are kept in memory per (segment, size); thumbnails are decrypted again when shown.
"""

from __future__ import annotations

import hashlib
import json
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


class EventScanner:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._cache: dict[tuple[str, int, int], Found] = {}

    def scan(self, seg: Segment) -> Found:
        key = (seg.name, seg.size, seg.report.verified_count)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = Found()
        cands = [r for r in seg.playable() if not r.flags & RecordFlag.KEY and r.length <= THUMB_MAX]
        if cands:
            for plain in self.archive.decrypt(seg, cands):
                self._one(seg, plain, found)
        self._cache[key] = found
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
