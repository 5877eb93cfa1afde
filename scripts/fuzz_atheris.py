#!/usr/bin/env python3
"""Coverage-guided fuzzing of the container v1 verifier and decryptor with atheris (libFuzzer).

Optional tool, not a project dependency:

    .venv/bin/pip install atheris
    .venv/bin/python scripts/fuzz_atheris.py -atheris_runs=20000          # bounded run
    .venv/bin/python scripts/fuzz_atheris.py -max_total_time=180 CORPUS/  # timed, keeping a corpus

The seed corpus is built at start-up (small valid segments: plain, padded/ChaCha20, checkpoints, gap
records, fMP4-like kinds, unclosed) plus every sealcam file found under tests/vectors; it is written to a
fresh directory that libFuzzer reads first (and extends, unless a corpus directory is given).

Each input is written to a file and fed to verify_segment (pinned and unpinned), light_report and
decrypt_segment (force off and on). A crash is:
- any exception other than sealcam's own (SealcamError and subclasses);
- a decrypt without force that succeeds but yields other plaintext than was sealed (undetected tampering);
- a segment that verifies OK against the pinned hub key but does not decrypt.
libFuzzer writes the input to crash-<sha1> in the working directory.
"""

from __future__ import annotations

import atexit
import io
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["sealcam"]):
    from sealcam.format.constants import MAGIC_PREFIX, STREAM_KINDS, GapReason, PayloadKind, Suite
    from sealcam.format.decrypt import decrypt_segment, light_report
    from sealcam.format.errors import SealcamError
    from sealcam.format.verify import verify_segment
    from sealcam.format.writer import Padding, SegmentWriter
    from sealcam.keys.hub import HubKey
    from sealcam.keys.identity import X25519Identity

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000_000

HUB = HubKey.generate()
IDENT = X25519Identity.generate()
PLAIN_BY_ID: dict[bytes, bytes] = {}
_BASE = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
WORK = _BASE / f"sealcam-atheris-{os.getpid()}"
TARGET = WORK / "input.seg"


def _clean_stale() -> None:
    """libFuzzer ends some runs (-max_total_time, crashes) with _exit(), skipping Python's exit handlers:
    remove what runs of this script left behind, when their process is gone."""
    for d in _BASE.glob("sealcam-atheris-*"):
        try:
            os.kill(int(d.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


_clean_stale()
WORK.mkdir()
atexit.register(shutil.rmtree, WORK, ignore_errors=True)


def _seal(rnd: random.Random, n: int, *, close: bool = True, gaps: tuple[int, ...] = (),
          kinds: tuple[PayloadKind, ...] = (PayloadKind.DATA,), **kw) -> bytes:  # noqa: ANN003
    buf = io.BytesIO()
    clock = iter(range(T0 + 10**8, T0 + 10**9, 1000))
    w = SegmentWriter(buf.write, signer=HUB, recipients=[IDENT.recipient], camera_handle=HUB.camera_handle("c"),
                      seq=rnd.randrange(100), clock=lambda: next(clock), **kw)
    plain = bytearray()
    for i in range(n):
        if i in gaps:
            w.add_gap(GapReason.DROPPED, from_us=T0 + i, until_us=T0 + i + 1, detail="x")
        kind = kinds[i % len(kinds)]
        payload = rnd.randbytes(rnd.randint(0, 700))
        w.add_chunk(payload, kind=kind, capture_us=T0 + 10**6 * i, key=i % 2 == 0)
        if kind in STREAM_KINDS:
            plain += payload
    if close:
        w.close()
    else:
        w.abort()
    PLAIN_BY_ID[w.header.segment_id] = bytes(plain)
    return buf.getvalue()


def seeds() -> list[bytes]:
    rnd = random.Random(7)
    out = [
        _seal(rnd, 4),
        _seal(rnd, 3, padding=Padding("multiple", 256), suite=Suite.CHACHA20_POLY1305),
        _seal(rnd, 6, checkpoint_every=2),
        _seal(rnd, 4, gaps=(0, 2)),
        _seal(rnd, 5, kinds=(PayloadKind.VIDEO_INIT, PayloadKind.VIDEO_FRAGMENT, PayloadKind.THUMBNAIL,
                             PayloadKind.EVENT), padding=Padding()),
        _seal(rnd, 4, close=False, checkpoint_every=2),
    ]
    vectors = ROOT / "tests" / "vectors"
    if vectors.is_dir():
        for p in sorted(vectors.rglob("*")):
            if p.is_file() and p.stat().st_size < 1 << 20:
                with open(p, "rb") as f:
                    if f.read(len(MAGIC_PREFIX)) == MAGIC_PREFIX:
                        out.append(p.read_bytes())
    return out


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def __call__(self, b: memoryview) -> None:
        self.data += b


def test_one_input(data: bytes) -> None:
    TARGET.write_bytes(data)
    try:
        rep = verify_segment(TARGET, signer=HUB.public)
        verify_segment(TARGET)
        light_report(TARGET)
    except SealcamError:
        return
    results = {}
    for force in (False, True):
        sink = Sink()
        try:
            decrypt_segment(TARGET, [IDENT], sink, force=force)
            results[force] = (None, bytes(sink.data))
        except SealcamError as exc:
            results[force] = (exc, b"")
    err, out = results[False]
    if err is None:
        seg = (light_report(TARGET) or verify_segment(TARGET)).header.segment_id
        if PLAIN_BY_ID.get(seg) != out:
            raise AssertionError("decrypt without force returned other plaintext than was sealed")
    if rep.ok and err is not None:
        raise AssertionError(f"verified OK against the pinned hub key but decrypt refused: {err}")


def main() -> None:
    corpus = WORK / "seeds"
    corpus.mkdir()
    for i, s in enumerate(seeds()):
        (corpus / f"seed-{i:03d}.seg").write_bytes(s)
    # libFuzzer adds new inputs to the first corpus directory: a given one, else the seeds' directory
    argv = [*sys.argv, str(corpus)]
    print(f"sealcam atheris: {len(list(corpus.iterdir()))} seeds in {corpus}", file=sys.stderr)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
