#!/usr/bin/env python3
"""Throughput of sealing and opening container v1 against the raw primitives it is built on, and seek latency.

    .venv/bin/python bench/seal.py            # 256 MiB per measurement, 1-hour recording for the seek test
    .venv/bin/python bench/seal.py --quick    # 32 MiB, 10-minute recording

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from sealcam.format.aead import wipe
from sealcam.format.constants import PayloadKind, RecordType, Suite
from sealcam.format.decrypt import decrypt_segment, iter_plain, light_report, select, unwrap_key
from sealcam.format.verify import verify_segment
from sealcam.format.writer import SegmentWriter
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import X25519Identity

MiB = 1 << 20
CHUNK_SIZES = (64 * 1024, 256 * 1024, 1024 * 1024)
CHUNKS_PER_SEGMENT = 60
T0 = 1_700_000_000_000_000
AD = bytes(95)  # about the size of the format's chunk AD (label + header digest + type/flags + clear fields)
SUITES = {Suite.AES_256_GCM: ("AES-256-GCM", AESGCM), Suite.CHACHA20_POLY1305: ("ChaCha20-Poly1305", ChaCha20Poly1305)}


def machine() -> list[str]:
    model, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    accel = " ".join(f for f in ("aes", "vaes", "pclmulqdq", "vpclmulqdq", "sha_ni", "avx2", "avx512f") if f in flags)
    from cryptography.hazmat.backends.openssl.backend import backend

    return [
        f"machine: {os.cpu_count()} cores, {model} [{accel or 'no crypto flags seen'}]",
        f"system:  {platform.system()} {platform.release()}, {platform.machine()}",
        f"python:  {sys.version.split()[0]}, cryptography {cryptography.__version__}, "
        f"{backend.openssl_version_text()}",
        "timing:  single thread, best of N runs (perf_counter), MB = 10^6 bytes of payload",
    ]


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def nonce(i: int) -> bytes:
    return i.to_bytes(12, "big")


class Clock:
    """The writer's clock, driven by the simulated capture time (so close() never goes backwards)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


# --- throughput ---------------------------------------------------------------------------------------------


def throughput(data: memoryview, repeat: int, shm: Path) -> None:
    total = len(data)
    print(f"\n== throughput: {total // MiB} MiB per measurement, a new segment every {CHUNKS_PER_SEGMENT} chunks ==")
    head = f"{'suite':<18} {'chunk':>6} | {'seal':^28} | {'open (verify + decrypt)':^28} | {'verify, no key':^28}"
    print(head)
    sub = f"{'':<18} {'':>6} | {'base MB/s':>9} {'format':>8} {'ratio':>7}  | {'base MB/s':>9} {'format':>8} " \
          f"{'ratio':>7}  | {'sha256':>9} {'format':>8} {'ratio':>7}"
    print(sub)
    print("-" * len(head))
    for suite in SUITES:
        for chunk in CHUNK_SIZES:
            print(one_size(suite, chunk, data, repeat, shm), flush=True)


def one_size(suite: Suite, chunk: int, data: memoryview, repeat: int, shm: Path) -> str:
    name, cls = SUITES[suite]
    hub, owner = HubKey.generate(), X25519Identity.generate()
    rcpt, handle = owner.recipient, hub.camera_handle("bench")
    n = len(data) // chunk
    pieces = [data[i * chunk : (i + 1) * chunk] for i in range(n)]
    mb = n * chunk / 1e6

    def base_seal() -> None:
        aead = cls(os.urandom(32))
        for i, p in enumerate(pieces):
            hashlib.sha256(aead.encrypt(nonce(i), p, AD)).digest()

    aead = cls(os.urandom(32))
    cts: list[bytes] = []

    def base_open() -> None:
        for i, ct in enumerate(cts):
            hashlib.sha256(ct).digest()
            aead.decrypt(nonce(i), ct, AD)

    def base_hash() -> None:
        for ct in cts:
            hashlib.sha256(ct).digest()

    def fmt_seal(out: list | None = None) -> None:
        clock = Clock()
        for s in range(0, n, CHUNKS_PER_SEGMENT):
            f = None
            write: Callable = lambda b: None  # noqa: E731 - an in-memory sink that discards
            if out is not None:
                path = shm / f"seg{s // CHUNKS_PER_SEGMENT:05d}.seg"
                f = open(path, "wb")  # noqa: SIM115
                out.append(path)
                write = f.write
            w = SegmentWriter(write, signer=hub, recipients=[rcpt], camera_handle=handle,
                              seq=s // CHUNKS_PER_SEGMENT, suite=suite, clock=clock)
            for i in range(s, min(s + CHUNKS_PER_SEGMENT, n)):
                clock.now = T0 + i * 1000
                w.add_chunk(pieces[i], kind=PayloadKind.VIDEO_FRAGMENT, capture_us=clock.now, key=True)
            w.close()
            if f is not None:
                f.close()

    paths: list[Path] = []

    def fmt_open() -> None:
        got = 0
        for p in paths:
            got += decrypt_segment(p, [owner], lambda b: None).bytes
        assert got == n * chunk, got

    def fmt_verify() -> None:
        for p in paths:
            assert verify_segment(p).ok

    t_bs, t_fs = best(base_seal, repeat), best(fmt_seal, repeat)
    fmt_seal(out=paths)  # the same segments, to files in memory (tmpfs) for the open side
    cts.extend(aead.encrypt(nonce(i), p, AD) for i, p in enumerate(pieces))
    t_bo, t_fo = best(base_open, repeat), best(fmt_open, repeat)
    t_bh, t_fv = best(base_hash, repeat), best(fmt_verify, repeat)
    for p in paths:
        p.unlink()
    return (f"{name:<18} {chunk // 1024:>4}Ki | {mb / t_bs:9.0f} {mb / t_fs:8.0f} {t_bs / t_fs:7.2f}  | "
            f"{mb / t_bo:9.0f} {mb / t_fo:8.0f} {t_bo / t_fo:7.2f}  | {mb / t_bh:9.0f} {mb / t_fv:8.0f} "
            f"{t_bh / t_fv:7.2f}")


# --- seek latency -----------------------------------------------------------------------------------------


def record(dirpath: Path, minutes: int, hub: HubKey, owner: X25519Identity) -> tuple[list[Path], int]:
    """A recording at 4 Mbit/s: one segment file per minute, one chunk per second (~500 KB, KEY flag on every
    chunk, chunk 0 of each segment the fMP4 init segment)."""
    rnd = random.Random(1)
    pool = rnd.randbytes(8 * MiB)
    init = rnd.randbytes(1200)
    per_second = 4_000_000 // 8
    clock, handle, prev, paths, size = Clock(), hub.camera_handle("porch"), bytes(32), [], 0
    for m in range(minutes):
        path = dirpath / f"{m:04d}.seg"
        seg_start = T0 + m * 60_000_000
        clock.now = seg_start
        with open(path, "wb") as f:
            w = SegmentWriter(f.write, signer=hub, recipients=[owner.recipient], camera_handle=handle, seq=m,
                              prev_link=prev, clock=clock)
            w.add_chunk(init, kind=PayloadKind.VIDEO_INIT, capture_us=seg_start, key=True)
            for s in range(60):
                clock.now = seg_start + s * 1_000_000
                off = rnd.randrange(len(pool) - per_second)
                w.add_chunk(memoryview(pool)[off : off + per_second], kind=PayloadKind.VIDEO_FRAGMENT,
                            capture_us=clock.now, key=True)
            clock.now = seg_start + 59_999_999
            prev = w.close().digest
        paths.append(path)
        size += path.stat().st_size
    return paths, size


def listing(paths: list[Path]) -> list[tuple[int, int, Path]]:
    """What a viewer caches once: each file's time range, from its signed header and tail (no chunk read)."""
    out = []
    for p in paths:
        rep = light_report(p)
        assert rep is not None, p
        times = [r.time_us for r in rep.records if r.type is RecordType.CHUNK]
        out.append((min(times), max(times), p))
    out.sort(key=lambda e: e[0])
    return out


def seek(index: list[tuple[int, int, Path]], starts: list[int], t: int, owner: X25519Identity) -> tuple[int, int]:
    """Open the file holding t, verify its tail, unwrap its key, decrypt chunk 0 (init) and the chunk from the
    last key frame at or before t. Returns (chunks, bytes) decrypted."""
    i = bisect.bisect_right(starts, t) - 1
    path = index[i][2]
    rep = light_report(path)
    recs = select(rep, t, t)
    key = unwrap_key(rep, [owner])
    try:
        chunks = nbytes = 0
        for plain in iter_plain(rep, key, recs):
            chunks += 1
            nbytes += len(plain.payload)
    finally:
        wipe(key)
    return chunks, nbytes


def drop_cache(paths: list[Path]) -> bool:
    """Ask the kernel to forget the files' cached pages (clean pages only; works without root)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def seek_bench(minutes: int, tmp: str | None, seeks: int = 20) -> None:
    hub, owner = HubKey.generate(), X25519Identity.generate()
    d = Path(tempfile.mkdtemp(prefix="sealcam-seek-", dir=tmp))
    try:
        t = time.perf_counter()
        paths, size = record(d, minutes, hub, owner)
        t_rec = time.perf_counter() - t
        print(f"\n== seek: {minutes} min at 4 Mbit/s = {len(paths)} files of 60 s, 1 s chunks, {size / 1e9:.2f} GB "
              f"in {d} (sealed and written in {t_rec:.1f} s, {size / 1e6 / t_rec:.0f} MB/s) ==")
        t = time.perf_counter()
        index = listing(paths)
        t_list = time.perf_counter() - t
        starts = [e[0] for e in index]
        print(f"listing (built once and cached, as a viewer would): {len(index)} files from signed header + tail "
              f"in {t_list * 1e3:.0f} ms")
        rnd = random.Random(42)
        targets = [T0 + rnd.randrange(minutes * 60_000_000) for _ in range(seeks)]
        for label, cold in (("warm (page cache)", False), ("cold (fadvise DONTNEED before each seek)", True)):
            if cold and not drop_cache(paths):
                continue
            ms, got = [], []
            for target in targets:
                if cold:
                    drop_cache([index[bisect.bisect_right(starts, target) - 1][2]])
                t = time.perf_counter()
                got.append(seek(index, starts, target, owner))
                ms.append((time.perf_counter() - t) * 1e3)
            chunks = {c for c, _ in got}
            mb = statistics.mean(b for _, b in got) / 1e6
            print(f"{seeks} random seeks, {label}: median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms "
                  f"(each: light_report + select + unwrap + decrypt {sorted(chunks)} chunks, {mb:.2f} MB)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32 MiB per measurement, a 10-minute recording")
    ap.add_argument("--mib", type=int, help="data per throughput measurement (default 256, --quick 32)")
    ap.add_argument("--minutes", type=int, help="length of the seek test recording (default 60, --quick 10)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    ap.add_argument("--tmp", help="directory for the seek test recording (default: the system temp dir)")
    ap.add_argument("--no-seek", action="store_true")
    ap.add_argument("--no-throughput", action="store_true")
    args = ap.parse_args(argv)
    mib = args.mib or (32 if args.quick else 256)
    minutes = args.minutes or (10 if args.quick else 60)
    print("\n".join(machine()))
    if not args.no_throughput:
        data = memoryview(os.urandom(mib * MiB))
        shm_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
        shm = Path(tempfile.mkdtemp(prefix="sealcam-bench-", dir=shm_root))
        try:
            throughput(data, args.repeat, shm)
        finally:
            shutil.rmtree(shm, ignore_errors=True)
    if not args.no_seek:
        seek_bench(minutes, args.tmp)


if __name__ == "__main__":
    main()
