"""Forward secrecy of the sealing side: once segment N is sealed, nothing it holds decrypts earlier segments.

The sealing side (the hub) only ever has the owner's *public* recipient. The test oracle, each segment's data
key, is obtained afterwards by the owner, unwrapping the stanza with the owner's identity; the sealing side's
objects, memory and disk are then searched for it. Each search also has a positive control: the data key of
the segment still open *is* found, which proves the search can see a key where one is.

(a) in-process: every object the garbage collector knows, and everything reachable from it (bytes, bytearray,
    memoryview, str; __dict__ and slots included), with the writers of all segments kept alive.
(b) a subprocess that only seals, then dumps its own readable+writable memory mappings (/proc/self/maps +
    /proc/self/mem): the raw key must be absent from the dump (also in the byte order of a software AES key
    schedule) and from the sealing side's working directory.
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sealcam.format.constants import PayloadKind, Suite
from sealcam.format.decrypt import unwrap_key
from sealcam.format.verify import verify_segment
from sealcam.format.writer import SegmentWriter
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import X25519Identity
from sealcam.keys.recipients import load_recipient

N = 3  # segments 0..N are sealed and closed; N+1 stays open


def _owner_key(path: Path, owner: X25519Identity) -> bytes:
    """The owner's side: unwrap a segment's data key from its KEYS record (the test oracle)."""
    rep = verify_segment(path)
    key = unwrap_key(rep, [owner])
    out = bytes(key)
    key[:] = bytes(len(key))
    return out


def _swapped(key: bytes) -> bytes:
    """The key as a software AES key schedule stores it on a little-endian machine (u32 words)."""
    return b"".join(key[i : i + 4][::-1] for i in range(0, len(key), 4))


def _forms(key: bytes) -> dict[str, bytes]:
    """What to look for: the key, and every 8-byte window of it at 4-byte steps (a freed buffer may keep only
    part of it), also as u32 words. A random 8-byte string turns up by chance in 100 MB with probability
    ~2^-37, so a hit is a leak."""
    out = {}
    for form, k in (("raw", key), ("as u32 words", _swapped(key))):
        out[form] = k
        for i in range(0, len(k) - 4, 4):
            out[f"{form}[{i}:{i + 8}]"] = k[i : i + 8]
    return out


# --- (a) in-process ---------------------------------------------------------------------------------------


def _seal_in_process(work: Path, recipient_text: str, suite: Suite) -> list[SegmentWriter]:
    hub = HubKey.generate()
    rcpt = load_recipient(recipient_text)  # the sealing side knows only the public recipient
    handle = hub.camera_handle("front door")
    prev = bytes(32)
    writers = []
    for seq in range(N + 2):
        f = open(work / f"seg{seq:03d}.seg", "wb", buffering=0)  # kept open for segment N+1
        w = SegmentWriter(f.write, signer=hub, recipients=[rcpt], camera_handle=handle, seq=seq, prev_link=prev,
                          suite=suite, checkpoint_every=2)
        for i in range(5):
            w.add_chunk(os.urandom(2000), kind=PayloadKind.VIDEO_FRAGMENT, key=i == 0)
        writers.append(w)
        if seq <= N:
            prev = w.close().digest
            f.close()
    return writers


def _everything_reachable(extra_roots: list, skip: set[int]):  # noqa: ANN202
    """Yield every bytes-like or str object reachable from the gc's objects and `extra_roots`."""
    seen: set[int] = set(skip)
    stack = list(gc.get_objects()) + list(extra_roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (bytes, bytearray, memoryview, str)):
            yield obj
        refs = gc.get_referents(obj)  # covers __dict__ and slots of ordinary objects; fetched again below
        if not isinstance(obj, type):  # object.__getattribute__: no __getattr__ or property code of theirs runs
            slots = type(obj).__dict__.get("__slots__", ())
            for name in ("__dict__", *([slots] if isinstance(slots, str) else slots)):
                with contextlib.suppress(Exception):  # arbitrary third-party objects: anything may refuse
                    refs.append(object.__getattribute__(obj, name))
        stack.extend(refs)


def _holders(needles: dict[str, bytes], roots: list, skip: set[int]) -> dict[str, list[str]]:
    hexes = {name: n.hex() for name, n in needles.items()}
    skip = skip | {id(v) for v in hexes.values()} | {id(hexes), id(needles)}
    found: dict[str, list[str]] = {name: [] for name in needles}
    for obj in _everything_reachable(roots, skip):
        if isinstance(obj, str):
            for name, h in hexes.items():
                if h in obj:
                    found[name].append(f"str of {len(obj)} chars (hex)")
            continue
        try:
            data = obj.tobytes() if isinstance(obj, memoryview) else obj
        except ValueError:  # a released memoryview
            continue
        for name, needle in needles.items():
            if needle in data:
                found[name].append(f"{type(obj).__name__} of {len(data)} bytes")
    return found


@pytest.mark.parametrize("suite", [Suite.AES_256_GCM, Suite.CHACHA20_POLY1305])
def test_closed_segment_keys_gone_from_python_objects(tmp_path: Path, suite: Suite) -> None:
    owner = X25519Identity.generate()
    writers = _seal_in_process(tmp_path, owner.label, suite)
    # oracle, afterwards and from the owner's side
    needles = {f"seg{seq}": _owner_key(tmp_path / f"seg{seq:03d}.seg", owner) for seq in range(N + 2)}
    gc.collect()
    found = _holders(needles, writers, skip={id(v) for v in needles.values()})
    assert found[f"seg{N + 1}"], "positive control: the open segment's key must be found (the scan is blind)"
    assert not found[f"seg{N - 1}"], f"segment N-1's data key survives in the sealing side: {found[f'seg{N - 1}']}"
    leaks = {k: v for k, v in found.items() if v and k != f"seg{N + 1}"}
    assert not leaks, f"closed segments' data keys survive in Python objects: {leaks}"
    writers[-1].abort()
    found = _holders({"open": needles[f"seg{N + 1}"]}, writers, skip={id(v) for v in needles.values()})
    assert not found["open"], f"abort() left the key behind: {found['open']}"


# --- (b) a separate sealing process, its whole writable memory -------------------------------------------

_SEALER = textwrap.dedent(
    """
    import os, sys
    from sealcam.format.constants import PayloadKind, Suite
    from sealcam.format.writer import SegmentWriter
    from sealcam.keys.hub import HubKey
    from sealcam.keys.recipients import load_recipient

    work, dump, recipient, n, suite = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Suite(int(sys.argv[5]))
    hub = HubKey.generate()
    rcpt = load_recipient(recipient)
    handle = hub.camera_handle("front door")
    prev, writers, files = bytes(32), [], []
    for seq in range(n + 2):
        f = open(os.path.join(work, f"seg{seq:03d}.seg"), "wb", buffering=0)
        files.append(f)
        w = SegmentWriter(f.write, signer=hub, recipients=[rcpt], camera_handle=handle, seq=seq, prev_link=prev,
                          suite=suite, checkpoint_every=2)
        for i in range(5):
            w.add_chunk(os.urandom(3000), kind=PayloadKind.VIDEO_FRAGMENT, key=i == 0)
        writers.append(w)  # kept alive on purpose
        if seq <= n:
            prev = w.close().digest
    # segment n+1 is still open: its key is in memory (the positive control)

    maps = open("/proc/self/maps").read().splitlines()
    mem = os.open("/proc/self/mem", os.O_RDONLY)
    out = os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    regions = 0
    for line in maps:
        fields = line.split()
        if not fields[1].startswith("rw"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        regions += 1
        pos = start
        while pos < end:
            try:
                chunk = os.pread(mem, min(end - pos, 1 << 20), pos)
            except OSError:
                break
            if not chunk:
                break
            os.write(out, chunk)
            pos += len(chunk)
    os.close(out)
    print(regions)
    """
)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc/self/mem")
@pytest.mark.parametrize("suite", [Suite.AES_256_GCM, Suite.CHACHA20_POLY1305])
def test_closed_segment_keys_gone_from_sealing_process_memory_and_disk(tmp_path: Path, suite: Suite) -> None:
    owner = X25519Identity.generate()  # lives in this (the owner's) process only
    work, elsewhere = tmp_path / "sealer", tmp_path / "owner"
    work.mkdir()
    elsewhere.mkdir()
    dump = elsewhere / "sealer.mem"
    proc = subprocess.run([sys.executable, "-c", _SEALER, str(work), str(dump), owner.label, str(N), str(int(suite))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    memory = dump.read_bytes()
    assert int(proc.stdout) > 0 and len(memory) > 1 << 20, "the sealer's memory dump is empty"
    keys = {seq: _owner_key(work / f"seg{seq:03d}.seg", owner) for seq in range(N + 2)}

    assert keys[N + 1] in memory, "positive control: the open segment's key must be in the dump (the scan is blind)"
    disk = b"".join(p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file())
    assert len(disk) > 0
    for seq in range(N + 1):
        for form, needle in _forms(keys[seq]).items():
            assert needle not in memory, f"segment {seq}'s data key ({form}) is still in the sealing process's memory"
            assert needle not in disk, f"segment {seq}'s data key ({form}) is on the sealing side's disk"
    assert keys[N + 1] not in disk, "the open segment's data key was written to disk"
