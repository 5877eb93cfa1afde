"""Live follow without re-doing work: the resumable verifier (sealcam.format.follow), the viewer's archive polling
a growing object, and events found once per segment (incrementally in the open one).

The verifier is checked against verify_segment itself: on every prefix of valid and of damaged segments the two
reports are equal, while the incremental one reads each byte a bounded number of times."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sealcam.format.verify as verify_mod
from sealcam.bus.names import object_name
from sealcam.format import problems as P
from sealcam.format.constants import GapReason, PayloadKind, RecordFlag, RecordType
from sealcam.format.follow import IncrementalVerifier
from sealcam.format.verify import verify_segment
from sealcam.format.writer import SegmentWriter
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import X25519Identity
from sealcam.storage import open_storage
from sealcam.viewer.archive import Archive
from sealcam.viewer.events import EventScanner

T0 = 1_768_046_400_000_000
HUB, OWNER = HubKey.generate(), X25519Identity.generate()
HANDLE = HUB.camera_handle("porch")


def _segment(n: int = 40, *, close: bool = True, seed: int = 1) -> bytes:
    """A segment as the crypto service writes it: key fragments, small EVENT chunks, a gap, a checkpoint
    every 5 chained records."""
    rnd = random.Random(seed)
    buf = io.BytesIO()
    clock = [T0]
    w = SegmentWriter(buf.write, signer=HUB, recipients=[OWNER.recipient], camera_handle=HANDLE, seq=0,
                      checkpoint_every=5, clock=lambda: clock[0])
    for i in range(n):
        clock[0] = T0 + i * 1_000_000
        if i == 7:
            w.add_gap(GapReason.FEED_LOST, from_us=clock[0] - 500, until_us=clock[0], detail="feed lost")
        if i % 4 == 3:
            ev = {"t": "motion", "event_id": f"e{i}", "phase": "start", "label": "person", "at_us": clock[0]}
            w.add_chunk(json.dumps(ev).encode(), kind=PayloadKind.EVENT, capture_us=clock[0], key=False)
        else:
            w.add_chunk(rnd.randbytes(rnd.randint(200, 3000)), kind=PayloadKind.VIDEO_FRAGMENT,
                        capture_us=clock[0], key=True)
    clock[0] += 1
    if close:
        w.close()
    else:
        w.abort()
    return buf.getvalue()


CLOSED = _segment()


class CountingFile(io.BytesIO):
    """A file that logs every byte range read from it."""

    def __init__(self, data: bytes, log: list[tuple[int, int]]) -> None:
        super().__init__(data)
        self.log = log

    def read(self, n: int | None = -1) -> bytes:
        at = self.tell()
        out = super().read(n)
        self.log.append((at, at + len(out)))
        return out


def _max_reads(log: list[tuple[int, int]], size: int) -> int:
    diff = [0] * (size + 1)
    for a, b in log:
        diff[a] += 1
        diff[b] -= 1
    most = run = 0
    for d in diff[:size]:
        run += d
        most = max(most, run)
    return most


# -- the resumable verifier ------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, len(CLOSED)), min_size=1, max_size=12),
       flip=st.one_of(st.none(), st.integers(0, len(CLOSED) - 1)))
def test_every_prefix_gets_the_report_verify_segment_gives(cuts: list[int], flip: int | None) -> None:
    data = bytearray(CLOSED)
    if flip is not None:
        data[flip] ^= 0x40  # damage anywhere: header, keys, a chunk, a checkpoint, the index...
    v = IncrementalVerifier("seg", signer=HUB.public)
    for cut in sorted(cuts) + [len(data)]:
        prefix = bytes(data[:cut])
        assert v.feed(io.BytesIO(prefix)) == verify_segment("seg", signer=HUB.public, fileobj=io.BytesIO(prefix))
    assert v.restarts == 0


def test_growing_segment_reads_each_byte_a_bounded_number_of_times() -> None:
    data = CLOSED
    log: list[tuple[int, int]] = []
    v = IncrementalVerifier("seg")
    step = 997
    cuts = list(range(0, len(data), step)) + [len(data)]  # mostly inside records: partial ones are held back
    for cut in cuts:
        rep = v.feed(CountingFile(data[:cut], log))
    assert rep.ok and rep.digest is not None and v.restarts == 0
    # a byte is scanned once; again at each poll that finds its record incomplete, and while its record is the
    # last chained one checked (compared once more per poll). So: bounded by record size / poll step, not by
    # the number of polls (a full verify per poll reads the first bytes len(cuts) times).
    longest = max(r.length for r in rep.records)
    per_poll = -(-longest // step)
    assert len(cuts) > 50 and _max_reads(log, len(data)) <= 2 + 2 * per_poll < len(cuts) // 4
    assert sum(b - a for a, b in log) <= len(data) + 2 * longest * len(cuts)


def test_a_changed_or_shrunk_prefix_starts_again_and_is_reported() -> None:
    data = _segment(40, close=False)
    v = IncrementalVerifier("seg")
    half = len(data) // 2
    v.feed(io.BytesIO(data[:half]))
    at = v.check_from  # the last chained record checked
    bad = bytearray(data)
    bad[at + 40] ^= 1  # changed on storage after it was verified
    rep = v.feed(io.BytesIO(bytes(bad)))
    assert v.restarts == 1 and rep == verify_segment("seg", fileobj=io.BytesIO(bytes(bad)))
    assert P.MODIFIED in {p.kind for p in rep.problems}  # the next checkpoint covers it
    rep = v.feed(io.BytesIO(data[: half // 2]))  # shrank
    assert v.restarts == 2 and rep == verify_segment("seg", fileobj=io.BytesIO(data[: half // 2]))


def test_bad_magic_and_short_objects() -> None:
    v = IncrementalVerifier("seg")
    assert [p.kind for p in v.feed(io.BytesIO(b"SEAL")).problems] == [P.MALFORMED]  # not yet 8 bytes
    assert v.feed(io.BytesIO(CLOSED[:200])).header is not None
    w = IncrementalVerifier("x")
    assert not w.feed(io.BytesIO(b"NOTSEALCAM" + bytes(100))).ok
    assert w.feed(io.BytesIO(b"NOTSEALCAM" + bytes(200))) == verify_segment("x", fileobj=io.BytesIO(
        b"NOTSEALCAM" + bytes(200)))


# -- the archive following a growing object --------------------------------------------------------------------

class CountingReader:
    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner, self.url, self.log = inner, inner.url, []

    def list(self, prefix: str = "", *, start_after: str | None = None):  # noqa: ANN201
        return self.inner.list(prefix, start_after=start_after)

    def read(self, name: str, offset: int, length: int) -> bytes:
        out = self.inner.read(name, offset, length)
        self.log.append((offset, offset + len(out)))
        return out

    def close(self) -> None:
        self.inner.close()


@pytest.fixture()
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of records hashed by the verifier (sealcam.format.verify's SHA-256 of each chained record)."""
    count = [0]

    class Counting:
        @staticmethod
        def sha256(data=b""):  # noqa: ANN001, ANN205
            count[0] += len(data)
            return hashlib.sha256(data)

    monkeypatch.setattr(verify_mod, "hashlib", Counting)
    return count


def _live_archive(tmp_path: Path, data: bytes) -> tuple[Archive, CountingReader, Path, str]:
    name = object_name(HANDLE.hex(), 0, T0)
    path = tmp_path / name
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:300])
    reader = CountingReader(open_storage(str(tmp_path)))
    a = Archive(reader, [OWNER], signer=HUB.public)
    a.refresh()
    return a, reader, path, name


def test_archive_verifies_only_new_bytes_of_a_growing_object(tmp_path: Path, hashed: list[int]) -> None:
    data = _segment(120, close=False)
    a, reader, path, name = _live_archive(tmp_path, data)
    cuts = list(range(600, len(data), 1500))
    reports = []
    for cut in cuts:
        path.write_bytes(data[:cut])  # the uploader appends (a partial record at the end, mostly)
        a.poll(HANDLE.hex() + "/")
        reports.append(a.segment(name).report)
    # every chained record hashed once (a full verify per poll hashes the early records len(cuts) times)
    assert len(cuts) > 50 and 0 < hashed[0] <= len(data)
    assert a.camera(HANDLE).open_segment == name and not a.camera(HANDLE).problems
    for cut, rep in zip(cuts, reports, strict=True):
        assert rep == verify_segment(name, signer=HUB.public, fileobj=io.BytesIO(data[:cut]))
    reads = [(x, y) for x, y in reader.log if y > 300]
    longest = max(r.length for r in reports[-1].records)
    assert sum(y - x for x, y in reads) <= len(data) + longest * len(cuts)


def test_archive_reports_footage_changed_behind_the_live_edge(tmp_path: Path) -> None:
    data = _segment(40, close=False)
    a, _, path, name = _live_archive(tmp_path, data)
    half = len(data) // 2
    path.write_bytes(data[:half])
    a.poll(HANDLE.hex() + "/")
    assert a.camera(HANDLE).open_segment == name and not a.camera(HANDLE).problems
    bad = bytearray(data)
    bad[a._live[name].verifier.check_from + 40] ^= 1  # a record already verified (and maybe shown) is changed
    path.write_bytes(bytes(bad))
    a.poll(HANDLE.hex() + "/")
    cam = a.camera(HANDLE)
    assert P.MODIFIED in {p.kind for p in cam.problems} and name in cam.bad_names()
    assert any("changed on storage while being followed" in p.message for p in cam.problems)
    path.write_bytes(data[:200])  # then shrinks: reported too
    a.poll(HANDLE.hex() + "/")
    assert any("shrank" in p.message for p in a.camera(HANDLE).problems)


def test_closing_segment_goes_on_from_the_live_state(tmp_path: Path) -> None:
    data = _segment(30, close=True, seed=3)
    a, reader, path, name = _live_archive(tmp_path, data)
    path.write_bytes(data[: len(data) - 5000])
    a.poll(HANDLE.hex() + "/")
    before = len(reader.log)
    path.write_bytes(data)
    a.poll(HANDLE.hex() + "/")
    seg = a.segment(name)
    assert seg.closed and seg.full and not a.camera(HANDLE).problems and a.camera(HANDLE).open_segment is None
    assert sum(y - x for x, y in reader.log[before:]) < 5000 + 4000  # the tail and the last record, not all


# -- events --------------------------------------------------------------------------------------------------

def test_events_are_decrypted_once_per_segment_and_incrementally_while_open(tmp_path: Path) -> None:
    data = _segment(60, close=True, seed=5)
    a, _, path, name = _live_archive(tmp_path, data)
    decrypted: list[int] = []
    real = a.decrypt

    def counting(seg, records):  # noqa: ANN001, ANN202
        for plain in real(seg, records):
            decrypted.append(plain.index)
            yield plain

    a.decrypt = counting
    scanner = EventScanner(a)
    seen = []
    for cut in range(2000, len(data) - 3000, 2500):
        path.write_bytes(data[:cut])
        a.poll(HANDLE.hex() + "/")
        seen.append([e["event_id"] for e in scanner.scan(a.segment(name)).events])
    assert len(decrypted) == len(set(decrypted)) > 5  # no event chunk decrypted twice while open
    path.write_bytes(data)
    a.poll(HANDLE.hex() + "/")
    found = scanner.scan(a.segment(name))
    assert [e["event_id"] for e in found.events] == [f"e{i}" for i in range(3, 60, 4)]
    assert seen[-1] == [e["event_id"] for e in found.events][: len(seen[-1])] and len(seen[-1]) < 15
    small = [j for j, r in enumerate(a.segment(name).report.records) if r.type is RecordType.CHUNK
             and not r.flags & RecordFlag.KEY]  # the event chunks and the empty final chunk close() adds
    assert sorted(decrypted) == small and len(small) == 16
    a.deep_verify()  # re-verification, a re-listing: the closed segment is not scanned again
    a.refresh()
    assert scanner.scan(a.segment(name)) is found and len(decrypted) == 16
