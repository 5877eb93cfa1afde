"""Message types on the buses, defined once and versioned.

Each message is a frozen dataclass, checked on construction, with `to_fields()` giving the Redis stream entry
(a dict of bytes to bytes) and `from_fields()` parsing one back (bytes or str keys, as redis-py returns them).
Every entry carries `v` (contract version) and `t` (message type); an unknown version, a wrong type, a missing
or unknown field or a value out of bounds raises `ContractError`. Integers are ASCII decimal, booleans 0/1,
text UTF-8. See docs/ref/streams.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Self

VERSION = 1
MAX_FRAGMENT_BYTES = 8 * 1024 * 1024
MAX_SEALED_BYTES = 33 * 1024 * 1024
MAX_DETAIL_BYTES = 512
MAX_COUNTERS = 64
MAX_INT = 2**63 - 1
MAX_THUMBNAIL_BYTES = 1024 * 1024
MAX_EVENT_DETAIL_BYTES = 8192

_CAMERA = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SERVICE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_COUNTER = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_HANDLE = re.compile(r"^(?:[0-9a-f]{2}){8,32}$")
_OBJECT = re.compile(r"^(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+){0,7}$")
_DECIMAL = re.compile(rb"^(?:0|[1-9][0-9]{0,18})$")
_EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_ -]{0,31}$")
#: Retention classes of sealed objects: footage kept by the continuous rule, or footage that holds an event.
RETENTION_CLASSES = ("continuous", "event")

Fields = dict[bytes, bytes]


class ContractError(ValueError):
    """A message does not follow the streams contract."""


def _int(name: str, value: object, lo: int = 0, hi: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ContractError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _text(name: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ContractError(f"{name} {value!r} does not match {pattern.pattern}")
    return value


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ContractError(f"{name} must be a bool, got {value!r}")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ContractError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def _data(name: str, value: object, limit: int) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ContractError(f"{name} must be bytes")
    value = bytes(value)
    if not 0 < len(value) <= limit:
        raise ContractError(f"{name} is {len(value)} bytes; must be 1..{limit}")
    return value


class _Reader:
    """Decodes one stream entry, remembering which fields were used so leftovers can be refused."""

    def __init__(self, fields: Mapping[bytes | str, bytes | str], kind: str, t: str) -> None:
        self.kind = kind
        self.f: dict[str, bytes] = {}
        for k, v in fields.items():
            key = k.decode("ascii", "replace") if isinstance(k, bytes | bytearray) else str(k)
            self.f[key] = v.encode() if isinstance(v, str) else bytes(v)
        self.used: set[str] = set()
        v = self.f.get("v")
        if v is None:
            raise ContractError(f"{kind}: entry has no 'v' (contract version) field")
        if v != str(VERSION).encode():
            raise ContractError(f"{kind}: unsupported contract version {v[:16]!r}; this build speaks v{VERSION} "
                                "(upgrade all services together)")
        if self.raw("t", True) != t.encode():
            raise ContractError(f"{kind}: entry is of type {self.f.get('t', b'')[:16]!r}, expected {t!r}")
        self.used |= {"v", "t"}

    def raw(self, name: str, required: bool = True) -> bytes | None:
        if name not in self.f:
            if required:
                raise ContractError(f"{self.kind}: missing field {name!r}")
            return None
        self.used.add(name)
        return self.f[name]

    def int(self, name: str) -> int:
        b = self.raw(name)
        if not _DECIMAL.match(b):
            raise ContractError(f"{self.kind}: field {name!r} is not a decimal integer")
        return int(b)

    def text(self, name: str, required: bool = True) -> str | None:
        b = self.raw(name, required)
        if b is None:
            return None
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise ContractError(f"{self.kind}: field {name!r} is not UTF-8") from None

    def bool(self, name: str) -> bool:
        b = self.raw(name)
        if b not in (b"0", b"1"):
            raise ContractError(f"{self.kind}: field {name!r} must be 0 or 1")
        return b == b"1"

    def done(self, extra_prefix: str | None = None) -> None:
        left = [k for k in self.f if k not in self.used and not (extra_prefix and k.startswith(extra_prefix))]
        if left:
            raise ContractError(f"{self.kind}: unknown field(s) {', '.join(sorted(left)[:5])}")


def _head(t: str) -> Fields:
    return {b"v": str(VERSION).encode(), b"t": t.encode()}


def _wrap(kind: str, fn):  # noqa: ANN001, ANN202 - internal helper
    try:
        return fn()
    except ContractError as exc:
        if str(exc).startswith(kind):
            raise
        raise ContractError(f"{kind}: {exc}") from None


@dataclass(frozen=True)
class VideoFragment:
    """One fMP4 piece from the recorder: `init` (ftyp+moov, once per segment/reconnect) or `media` (moof+mdat)."""

    T: ClassVar[str] = "frag"
    camera: str
    seq: int  # per camera, +1 per fragment; a jump is a gap
    capture_us: int  # UTC wall clock of the fragment's first frame, µs since the Unix epoch
    keyframe: bool
    kind: Literal["init", "media"]
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _text("camera", self.camera, _CAMERA)
        _int("seq", self.seq)
        _int("capture_us", self.capture_us)
        _bool("keyframe", self.keyframe)
        _choice("kind", self.kind, ("init", "media"))
        object.__setattr__(self, "data", _data("data", self.data, MAX_FRAGMENT_BYTES))

    def to_fields(self) -> Fields:
        return _head(self.T) | {b"camera": self.camera.encode(), b"seq": b"%d" % self.seq,
                                b"capture_us": b"%d" % self.capture_us, b"keyframe": b"1" if self.keyframe else b"0",
                                b"kind": self.kind.encode(), b"data": self.data}

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> Self:
        r = _Reader(fields, cls.__name__, cls.T)
        msg = _wrap(cls.__name__, lambda: cls(r.text("camera"), r.int("seq"), r.int("capture_us"), r.bool("keyframe"),
                                              r.text("kind"), r.raw("data")))
        r.done()
        return msg


@dataclass(frozen=True)
class FeedEvent:
    """A camera feed was lost or came back (a lost feed is an event, never a silent gap)."""

    T: ClassVar[str] = "feed"
    camera: str
    state: Literal["lost", "back"]
    at_us: int  # UTC, µs since the Unix epoch
    detail: str = ""  # short, human-readable (ffmpeg's last error line); no credentials

    def __post_init__(self) -> None:
        _text("camera", self.camera, _CAMERA)
        _choice("state", self.state, ("lost", "back"))
        _int("at_us", self.at_us)
        if not isinstance(self.detail, str) or len(self.detail.encode()) > MAX_DETAIL_BYTES:
            raise ContractError(f"detail must be text of at most {MAX_DETAIL_BYTES} UTF-8 bytes")

    def to_fields(self) -> Fields:
        return _head(self.T) | {b"camera": self.camera.encode(), b"state": self.state.encode(),
                                b"at_us": b"%d" % self.at_us, b"detail": self.detail.encode()}

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> Self:
        r = _Reader(fields, cls.__name__, cls.T)
        msg = _wrap(cls.__name__, lambda: cls(r.text("camera"), r.text("state"), r.int("at_us"), r.text("detail")))
        r.done()
        return msg


@dataclass(frozen=True)
class Health:
    """Non-sensitive metadata: who, which camera, counters and lag. The only thing that crosses plain -> sealed
    besides sealed records (crypto forwards it)."""

    T: ClassVar[str] = "health"
    service: str
    at_us: int
    counters: Mapping[str, int] = field(default_factory=dict)
    lag_ms: int = 0
    camera: str | None = None

    def __post_init__(self) -> None:
        _text("service", self.service, _SERVICE)
        _int("at_us", self.at_us)
        _int("lag_ms", self.lag_ms)
        if self.camera is not None:
            _text("camera", self.camera, _CAMERA)
        if not isinstance(self.counters, Mapping) or len(self.counters) > MAX_COUNTERS:
            raise ContractError(f"counters must be a mapping of at most {MAX_COUNTERS} entries")
        for k, v in self.counters.items():
            _text("counter name", k, _COUNTER)
            _int(f"counter {k}", v)
        object.__setattr__(self, "counters", dict(sorted(self.counters.items())))

    def to_fields(self) -> Fields:
        out = _head(self.T) | {b"service": self.service.encode(), b"at_us": b"%d" % self.at_us,
                               b"lag_ms": b"%d" % self.lag_ms}
        if self.camera is not None:
            out[b"camera"] = self.camera.encode()
        out.update({b"c." + k.encode(): b"%d" % v for k, v in self.counters.items()})
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> Self:
        r = _Reader(fields, cls.__name__, cls.T)
        names = [k[2:] for k in r.f if k.startswith("c.")]
        if len(names) > MAX_COUNTERS:
            raise ContractError(f"Health: more than {MAX_COUNTERS} counters")
        msg = _wrap(cls.__name__, lambda: cls(r.text("service"), r.int("at_us"), {n: r.int("c." + n) for n in names},
                                              r.int("lag_ms"), r.text("camera", required=False)))
        r.done()
        return msg


@dataclass(frozen=True)
class SealedRecord:
    """Bytes of a sealed segment object, to be appended at `offset` of `object_name` on every backend."""

    T: ClassVar[str] = "rec"
    handle: str  # opaque per-camera hex id chosen by crypto
    seg_seq: int  # segment number within the handle
    offset: int  # byte offset of `data` in the object; records of one object arrive in order, contiguous
    data: bytes = field(repr=False)
    final: bool  # the object is complete after this record
    object_name: str  # relative object path on the backends, e.g. 2025/01/02/<handle>-000042.seal
    retention: Literal["continuous", "event"] = "continuous"  # the object's retention class (uploader)

    def __post_init__(self) -> None:
        _text("handle", self.handle, _HANDLE)
        _int("seg_seq", self.seg_seq)
        _int("offset", self.offset)
        object.__setattr__(self, "data", _data("data", self.data, MAX_SEALED_BYTES))
        _int("offset + len(data)", self.offset + len(self.data))
        _bool("final", self.final)
        if not isinstance(self.object_name, str) or len(self.object_name) > 255:
            raise ContractError("object_name must be text of at most 255 characters")
        _text("object_name", self.object_name, _OBJECT)
        _choice("retention", self.retention, RETENTION_CLASSES)

    def to_fields(self) -> Fields:
        out = _head(self.T) | {b"handle": self.handle.encode(), b"seg_seq": b"%d" % self.seg_seq,
                               b"offset": b"%d" % self.offset, b"data": self.data,
                               b"final": b"1" if self.final else b"0", b"object": self.object_name.encode()}
        if self.retention != "continuous":  # optional on the wire: absent means continuous
            out[b"retention"] = self.retention.encode()
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> Self:
        r = _Reader(fields, cls.__name__, cls.T)
        msg = _wrap(cls.__name__, lambda: cls(r.text("handle"), r.int("seg_seq"), r.int("offset"), r.raw("data"),
                                              r.bool("final"), r.text("object"),
                                              r.text("retention", required=False) or "continuous"))
        r.done()
        return msg


#: What a MotionEvent is about: pixels changed, an object was recognised, or the camera was tampered with.
EVENT_KINDS = ("motion", "object", "tamper")
#: Labels of tamper events (kind "tamper"); object labels are the detector's class names.
TAMPER_LABELS = ("covered", "blinded", "moved")


@dataclass(frozen=True)
class MotionEvent:
    """Start, update or end of a detected event (motion, an object, tampering) on one camera.

    One event is one `event_id`; its messages go start -> update* -> end. `detail` is a JSON object (UTF-8,
    bounded) with what the viewer shows: `{"labels": {label: best score}, "boxes": [[x0, y0, x1, y1, label,
    score], ...], "zones": [...]}` with box coordinates as fractions of the frame (0..1) and scores 0..1.
    """

    T: ClassVar[str] = "motion"
    camera: str
    event_id: str  # 32 lower-case hex digits, random per event
    phase: Literal["start", "update", "end"]
    kind: Literal["motion", "object", "tamper"]
    at_us: int  # time of the frame this message describes
    start_us: int  # time of the event's first frame
    end_us: int = 0  # time of the event's last frame; set (> 0) on end only
    label: str = "motion"  # best label so far: "motion", a class name ("person"), or a TAMPER_LABELS entry
    score: int = 0  # best score so far, per mille (0..1000)
    detail: str = "{}"

    def __post_init__(self) -> None:
        _text("camera", self.camera, _CAMERA)
        _text("event_id", self.event_id, _EVENT_ID)
        _choice("phase", self.phase, ("start", "update", "end"))
        _choice("kind", self.kind, EVENT_KINDS)
        _int("at_us", self.at_us)
        _int("start_us", self.start_us, 0, self.at_us)
        if self.phase == "end":
            _int("end_us", self.end_us, self.start_us)
        elif self.end_us != 0:
            raise ContractError("end_us is set on the end message only")
        _text("label", self.label, _LABEL)
        if self.kind == "tamper" and self.label not in TAMPER_LABELS:
            raise ContractError(f"tamper label must be one of {', '.join(TAMPER_LABELS)}, got {self.label!r}")
        _int("score", self.score, 0, 1000)
        if not isinstance(self.detail, str) or len(self.detail.encode()) > MAX_EVENT_DETAIL_BYTES:
            raise ContractError(f"detail must be text of at most {MAX_EVENT_DETAIL_BYTES} UTF-8 bytes")
        import json

        try:
            parsed = json.loads(self.detail)
        except ValueError:
            raise ContractError("detail is not JSON") from None
        if not isinstance(parsed, dict):
            raise ContractError("detail must be a JSON object")

    def to_fields(self) -> Fields:
        return _head(self.T) | {b"camera": self.camera.encode(), b"event_id": self.event_id.encode(),
                                b"phase": self.phase.encode(), b"kind": self.kind.encode(),
                                b"at_us": b"%d" % self.at_us, b"start_us": b"%d" % self.start_us,
                                b"end_us": b"%d" % self.end_us, b"label": self.label.encode(),
                                b"score": b"%d" % self.score, b"detail": self.detail.encode()}

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> Self:
        r = _Reader(fields, cls.__name__, cls.T)
        msg = _wrap(cls.__name__, lambda: cls(r.text("camera"), r.text("event_id"), r.text("phase"), r.text("kind"),
                                              r.int("at_us"), r.int("start_us"), r.int("end_us"), r.text("label"),
                                              r.int("score"), r.text("detail")))
        r.done()
        return msg


@dataclass(frozen=True)
class Thumbnail:
    """A JPEG of an event's best frame (crypto seals it as a THUMBNAIL record next to the footage)."""

    T: ClassVar[str] = "thumb"
    camera: str
    event_id: str  # the MotionEvent it belongs to
    at_us: int  # time of the frame
    data: bytes = field(repr=False)  # JPEG, 1 byte .. 1 MiB, starting with FF D8

    def __post_init__(self) -> None:
        _text("camera", self.camera, _CAMERA)
        _text("event_id", self.event_id, _EVENT_ID)
        _int("at_us", self.at_us)
        object.__setattr__(self, "data", _data("data", self.data, MAX_THUMBNAIL_BYTES))
        if not self.data.startswith(b"\xff\xd8"):
            raise ContractError("data is not a JPEG (no FF D8 start-of-image marker)")

    def to_fields(self) -> Fields:
        return _head(self.T) | {b"camera": self.camera.encode(), b"event_id": self.event_id.encode(),
                                b"at_us": b"%d" % self.at_us, b"data": self.data}

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> Self:
        r = _Reader(fields, cls.__name__, cls.T)
        msg = _wrap(cls.__name__, lambda: cls(r.text("camera"), r.text("event_id"), r.int("at_us"), r.raw("data")))
        r.done()
        return msg


MESSAGES: dict[str, type] = {m.T: m for m in (VideoFragment, FeedEvent, Health, SealedRecord, MotionEvent,
                                               Thumbnail)}
AnyMessage = VideoFragment | FeedEvent | Health | SealedRecord | MotionEvent | Thumbnail


def decode(fields: Mapping[bytes | str, bytes | str]) -> AnyMessage:
    """Parse an entry of any type, chosen by its `t` field."""
    t = fields.get(b"t", fields.get("t"))  # type: ignore[call-overload]
    name = t.decode("ascii", "replace") if isinstance(t, bytes) else t
    if name not in MESSAGES:
        raise ContractError(f"unknown message type {name!r}")
    return MESSAGES[name].from_fields(fields)
