"""Streams contract: round trips, bounds, version and type errors, names, and the doc listing every stream."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sealcam.bus import names
from sealcam.bus.contract import (
    MAX_COUNTERS,
    MAX_EVENT_DETAIL_BYTES,
    MAX_FRAGMENT_BYTES,
    MAX_SEALED_BYTES,
    MAX_THUMBNAIL_BYTES,
    ContractError,
    FeedEvent,
    Health,
    MotionEvent,
    SealedRecord,
    Thumbnail,
    VideoFragment,
    decode,
)

ROOT = Path(__file__).resolve().parent.parent
HANDLE = "0123456789abcdef"
EID = "0123456789abcdef0123456789abcdef"
JPEG = b"\xff\xd8\xff\xe0" + b"j" * 100

SAMPLES = [
    VideoFragment("front-door", 0, 1_700_000_000_000_000, True, "init", b"\x00\x00\x00\x18ftyp"),
    VideoFragment("cam_2", 2**63 - 1, 0, False, "media", b"m" * 1000),
    FeedEvent("garage", "lost", 1_700_000_000_000_001, "Connection refused ünïcode"),
    FeedEvent("garage", "back", 5),
    Health("recorder", 7, {"fragments": 10, "reconnects": 0}, lag_ms=250, camera="garage"),
    Health("uploader", 8),
    SealedRecord(HANDLE, 42, 1024, b"\x01" * 64, True, "2025/01/02/0123456789abcdef-000042.seal"),
    MotionEvent("garage", EID, "start", "motion", 10, 9),
    MotionEvent("garage", EID, "end", "object", 30, 9, 29, "person", 870,
                '{"labels": {"person": 0.87}, "boxes": [[0.1, 0.2, 0.3, 0.9, "person", 0.87]]}'),
    MotionEvent("garage", EID, "update", "tamper", 12, 12, label="covered", score=1000),
    Thumbnail("garage", EID, 20, JPEG),
]


def as_redis_py(fields: dict[bytes, bytes], decode_responses: bool) -> dict:
    if not decode_responses:
        return dict(fields)
    return {k.decode(): v.decode("latin-1") if k == b"data" else v.decode() for k, v in fields.items()}


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    fields = msg.to_fields()
    assert fields[b"v"] == b"1" and all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in fields.items())
    assert type(msg).from_fields(fields) == msg
    assert decode(fields) == msg
    if not isinstance(msg, VideoFragment | SealedRecord | Thumbnail):  # str keys/values, as with decode_responses=True
        assert type(msg).from_fields(as_redis_py(fields, True)) == msg


def test_data_not_in_repr() -> None:
    assert "ftyp" not in repr(SAMPLES[0]) and "\\x01" not in repr(SAMPLES[-1])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: VideoFragment("Front", 0, 0, True, "media", b"x"), "camera"),
        (lambda: VideoFragment("cam", -1, 0, True, "media", b"x"), "seq"),
        (lambda: VideoFragment("cam", 0, 2**63, True, "media", b"x"), "capture_us"),
        (lambda: VideoFragment("cam", 0, 0, 1, "media", b"x"), "keyframe"),
        (lambda: VideoFragment("cam", 0, 0, True, "moov", b"x"), "kind"),
        (lambda: VideoFragment("cam", 0, 0, True, "media", b""), "data"),
        (lambda: VideoFragment("cam", 0, 0, True, "media", b"x" * (MAX_FRAGMENT_BYTES + 1)), "data"),
        (lambda: VideoFragment("cam", True, 0, True, "media", b"x"), "seq"),
        (lambda: FeedEvent("cam", "gone", 0), "state"),
        (lambda: FeedEvent("cam", "lost", 0, "x" * 513), "detail"),
        (lambda: Health("Crypto", 0), "service"),
        (lambda: Health("crypto", 0, {"Bad Name": 1}), "counter name"),
        (lambda: Health("crypto", 0, {"n": -1}), "counter n"),
        (lambda: Health("crypto", 0, {f"c{i}": 1 for i in range(MAX_COUNTERS + 1)}), "counters"),
        (lambda: Health("crypto", 0, lag_ms=-5), "lag_ms"),
        (lambda: SealedRecord("ABCDEF0123456789", 0, 0, b"x", False, "a"), "handle"),
        (lambda: SealedRecord("abc", 0, 0, b"x", False, "a"), "handle"),
        (lambda: SealedRecord(HANDLE, 0, 0, b"x" * (MAX_SEALED_BYTES + 1), False, "a"), "data"),
        (lambda: SealedRecord(HANDLE, 0, 2**63 - 1, b"xx", False, "a"), "offset"),
        (lambda: SealedRecord(HANDLE, 0, 0, b"x", False, "../etc/passwd"), "object_name"),
        (lambda: SealedRecord(HANDLE, 0, 0, b"x", False, "/abs"), "object_name"),
        (lambda: SealedRecord(HANDLE, 0, 0, b"x", False, "a/./b"), "object_name"),
        (lambda: SealedRecord(HANDLE, 0, 0, b"x", False, "a" * 256), "object_name"),
        (lambda: MotionEvent("cam", "XYZ", "start", "motion", 1, 1), "event_id"),
        (lambda: MotionEvent("cam", EID, "begin", "motion", 1, 1), "phase"),
        (lambda: MotionEvent("cam", EID, "start", "noise", 1, 1), "kind"),
        (lambda: MotionEvent("cam", EID, "start", "motion", 1, 2), "start_us"),
        (lambda: MotionEvent("cam", EID, "start", "motion", 5, 1, 4), "end_us is set on the end message only"),
        (lambda: MotionEvent("cam", EID, "end", "motion", 5, 3, 2), "end_us"),
        (lambda: MotionEvent("cam", EID, "start", "tamper", 1, 1, label="person"), "tamper label"),
        (lambda: MotionEvent("cam", EID, "start", "object", 1, 1, label="Person!"), "label"),
        (lambda: MotionEvent("cam", EID, "start", "object", 1, 1, score=1001), "score"),
        (lambda: MotionEvent("cam", EID, "start", "motion", 1, 1, detail="[1]"), "JSON object"),
        (lambda: MotionEvent("cam", EID, "start", "motion", 1, 1, detail="{"), "not JSON"),
        (lambda: MotionEvent("cam", EID, "start", "motion", 1, 1,
                             detail='{"a": "%s"}' % ("x" * MAX_EVENT_DETAIL_BYTES)), "detail"),
        (lambda: Thumbnail("cam", EID, 1, b"\x89PNG"), "JPEG"),
        (lambda: Thumbnail("cam", EID, 1, b"\xff\xd8" + b"x" * MAX_THUMBNAIL_BYTES), "data"),
    ],
)
def test_bounds_on_construction(make, match: str) -> None:  # noqa: ANN001
    with pytest.raises(ContractError, match=match):
        make()


def test_max_sizes_accepted() -> None:
    VideoFragment("cam", 0, 0, True, "media", b"x" * MAX_FRAGMENT_BYTES)
    SealedRecord(HANDLE, 0, 0, memoryview(b"x" * MAX_SEALED_BYTES), False, "a")


def _fields(**change: bytes | None) -> dict[bytes, bytes]:
    f = SAMPLES[1].to_fields()
    for k, v in change.items():
        if v is None:
            f.pop(k.encode())
        else:
            f[k.encode()] = v
    return f


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"v": b"2"}, r"VideoFragment: unsupported contract version b'2'; this build speaks v1"),
        ({"v": None}, r"no 'v'"),
        ({"t": b"rec"}, r"type b'rec', expected 'frag'"),
        ({"seq": b"-1"}, r"'seq' is not a decimal integer"),
        ({"seq": b"007"}, r"'seq' is not a decimal integer"),
        ({"seq": b"99999999999999999999"}, r"'seq' is not a decimal integer"),
        ({"seq": b"9223372036854775808"}, r"VideoFragment: seq must be an integer"),
        ({"keyframe": b"yes"}, r"'keyframe' must be 0 or 1"),
        ({"camera": b"\xff"}, r"'camera' is not UTF-8"),
        ({"data": None}, r"missing field 'data'"),
        ({"data": b""}, r"VideoFragment: data is 0 bytes"),
        ({"extra": b"1"}, r"unknown field\(s\) extra"),
    ],
)
def test_parse_errors(change: dict, match: str) -> None:
    with pytest.raises(ContractError, match=match):
        VideoFragment.from_fields(_fields(**change))


def test_health_counter_fields() -> None:
    f = SAMPLES[4].to_fields()
    assert f[b"c.fragments"] == b"10" and b"camera" in f and b"camera" not in SAMPLES[5].to_fields()
    f[b"c.bad"] = b"x"
    with pytest.raises(ContractError, match="'c.bad' is not a decimal"):
        Health.from_fields(f)


def test_decode_unknown_type() -> None:
    with pytest.raises(ContractError, match="unknown message type 'zzz'"):
        decode({b"v": b"1", b"t": b"zzz"})


def test_names() -> None:
    assert names.plain_frag("cam1") == "plain:frag:cam1"
    assert names.plain_event("cam1") == "plain:event:cam1"
    assert names.plain_init(names.plain_frag("cam1")) == "plain:init:frag:cam1"
    assert names.plain_init(names.plain_detect("cam1")) == "plain:init:detect:cam1"
    with pytest.raises(ValueError, match="invalid video stream"):
        names.plain_init(names.plain_event("cam1"))
    assert names.sealed_rec(HANDLE) == f"sealed:rec:{HANDLE}"
    assert names.heartbeat_key("crypto", "host-1") == "hb:crypto:host-1"
    for bad in (lambda: names.plain_frag("a:b"), lambda: names.plain_frag("*"), lambda: names.sealed_rec("xyz"),
                lambda: names.heartbeat_key("crypto", "a:b")):
        with pytest.raises(ValueError, match="invalid"):
            bad()
    assert names.HEARTBEAT_INTERVAL_S < names.HEARTBEAT_TTL_S


def test_streams_doc_lists_every_stream() -> None:
    doc = (ROOT / "docs" / "ref" / "streams.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z{}]+:[a-z:{}]+)` \|.*$", doc, re.M)}
    for s in names.STREAMS:
        assert s.pattern in rows, f"{s.pattern} missing from docs/ref/streams.md"
        row = rows[s.pattern]
        assert f"| {s.maxlen} |" in row and s.message in row and f"| {s.bus} |" in row
        assert all(f"`{g}`" in row for g in s.groups) and all(p in row for p in s.producers)
    assert set(rows) == {s.pattern for s in names.STREAMS}
    for cls in (VideoFragment, FeedEvent, Health, SealedRecord, MotionEvent, Thumbnail):
        assert f"### {cls.__name__} (`t={cls.T}`)" in doc
