"""Archives for the viewer tests (a helper, not a test): real ffmpeg H.264 fMP4 sealed with the real
SegmentWriter into the uploader's object layout (HANDLE/SEQ-HOUR.seal), with EVENT, THUMBNAIL and GAP records.

Layout of `build(dir)` (camera "porch", T0 = 2026-01-10T12:00:00Z, 1 s fragments, all key frames):
    seq 0..2   T0+0 .. T0+30 s       run 1; seq 1 holds a "person" event T0+12..T0+16 s and its thumbnail
    seq 3..5   T0+60 .. T0+90 s      run 2 (ffmpeg restarted: decode times start again at 0); seq 3 opens
                                     with a signed FEED_LOST gap T0+30..T0+60 s
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sealcam.bus.names import object_name
from sealcam.format.constants import GapReason, PayloadKind
from sealcam.format.writer import SegmentWriter
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import X25519Identity
from sealcam.media.fmp4 import iter_fragments

T0 = 1_768_046_400_000_000  # 2026-01-10T12:00:00Z
SEG_S = 10
EVENT_ID = "0123456789abcdef0123456789abcdef"


def ffmpeg_available() -> str | None:
    return None if shutil.which("ffmpeg") else "needs ffmpeg (bash scripts/setup.sh --test)"


def encode(seconds: int, size: str = "320x240", fps: int = 10, bitrate: str = "300k") -> bytes:
    """H.264 fMP4 from ffmpeg's test source: a key frame (and a fragment) every second."""
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
         "-b:v", bitrate, "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
         "-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer", "pipe:1"],
        check=True, capture_output=True).stdout


def jpeg() -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120", "-frames:v", "1",
                           "-f", "mjpeg", "pipe:1"], check=True, capture_output=True).stdout


def split(fmp4: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """(init, [(decode time in µs, fragment)])."""
    import io

    init, frags = b"", []
    for f in iter_fragments(io.BytesIO(fmp4)):
        if f.kind == "init":
            init = f.data
        else:
            frags.append((f.decode_time * 1_000_000 // f.timescale, f.data))
    return init, frags


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Built:
    root: Path
    hub: HubKey
    owner: X25519Identity
    handle: bytes
    names: dict[int, str]  # seq -> object name
    last_digest: bytes = b""  # digest of the newest segment (the next one's prev_link)


def write_segment(root: Path, hub: HubKey, owner: X25519Identity, handle: bytes, seq: int, prev: bytes, start: int,
                  init: bytes, frags: list[tuple[int, bytes]], extra: list, *, close: bool = True) -> tuple[str, bytes]:
    """One segment: init, then fragments at start + their offset, with `extra` records (time, kind or "gap",
    payload or gap args) placed by time. Returns (object name, segment digest or b'' if left open)."""
    name = object_name(handle.hex(), seq, start)
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    clock = Clock(start)
    f = open(path, "wb")  # noqa: SIM115 - closed below, also when left "open" (the segment is)
    w = SegmentWriter(f.write, signer=hub, recipients=[owner.recipient], camera_handle=handle, seq=seq,
                      prev_link=prev, checkpoint_every=5, clock=clock)
    w.add_chunk(init, kind=PayloadKind.VIDEO_INIT, capture_us=start, key=True)
    items = [(start + off, 1, PayloadKind.VIDEO_FRAGMENT, data) for off, data in frags]
    items += [(t, 0, kind, payload) for t, kind, payload in extra]
    for t, _, kind, payload in sorted(items, key=lambda x: (x[0], x[1])):
        clock.now = t
        if kind == "gap":
            w.add_gap(GapReason.FEED_LOST, **payload)
        else:
            w.add_chunk(payload, kind=kind, capture_us=t, key=kind is PayloadKind.VIDEO_FRAGMENT)
        f.flush()
    digest = b""
    if close:
        digest = w.close().digest
    else:
        w.abort()
    f.close()
    return name, digest


def build(root: Path, fmp4: bytes | None = None) -> Built:
    hub, owner = HubKey.generate(), X25519Identity.generate()
    handle = hub.camera_handle("porch")
    init, frags = split(fmp4 or encode(30))
    thumb = jpeg()
    meta = json.dumps({"camera": "porch", "source": "test", "content_type": "video/mp4"}).encode()
    ev = {"t": "motion", "camera": "porch", "event_id": EVENT_ID, "kind": "object", "label": "person", "score": 870,
          "start_us": T0 + 12_000_000, "detail": "{}"}
    extra_by_seq: dict[int, list] = {
        0: [(T0, PayloadKind.METADATA, meta)],
        1: [(T0 + 12_000_000, PayloadKind.EVENT,
             json.dumps(ev | {"phase": "start", "at_us": T0 + 12_000_000}).encode()),
            (T0 + 13_000_000, PayloadKind.EVENT, json.dumps(
                {"t": "thumb", "camera": "porch", "event_id": EVENT_ID, "at_us": T0 + 13_000_000,
                 "bytes": len(thumb), "sha256": hashlib.sha256(thumb).hexdigest()}).encode()),
            (T0 + 13_000_001, PayloadKind.THUMBNAIL, thumb),
            (T0 + 14_000_000, PayloadKind.EVENT, json.dumps({"t": "future-kind", "label": "ignored"}).encode()),
            (T0 + 16_000_000, PayloadKind.EVENT, json.dumps(ev | {"phase": "end", "at_us": T0 + 16_000_000,
                                                                  "end_us": T0 + 16_000_000}).encode())],
        3: [(T0 + 60_000_000, "gap", {"from_us": T0 + 30_000_000, "until_us": T0 + 60_000_000,
                                      "detail": "camera feed lost: connection refused"})],
    }
    names, prev = {}, bytes(32)
    for seq in range(6):
        run_start = T0 if seq < 3 else T0 + 60_000_000
        k = seq % 3
        part = [(off - k * SEG_S * 1_000_000, data) for off, data in frags
                if k * SEG_S * 1_000_000 <= off < (k + 1) * SEG_S * 1_000_000]
        start = run_start + k * SEG_S * 1_000_000
        # run 2: ffmpeg restarted, so its decode times start at 0 again (the fragments are reused as they are)
        names[seq], prev = write_segment(root, hub, owner, handle, seq, prev, start, init, part,
                                         extra_by_seq.get(seq, []))
    return Built(root, hub, owner, handle, names, prev)


def tamper(src: Built, dst: Path) -> Built:
    """A copy with segment 2 deleted (missing sequence number) and one ciphertext byte of segment 4 flipped."""
    shutil.copytree(src.root, dst)
    (dst / src.names[2]).unlink()
    p = dst / src.names[4]
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    return Built(dst, src.hub, src.owner, src.handle, src.names)
