"""`sealcam seal`: seal a file or stdin (plain bytes, or fragmented MP4) into one signed, encrypted segment.

Chunk layout written here (docs/ref/cli.md):
    plain mode:  0 METADATA, 1.. DATA (chunk 1 flagged KEY)
    --fmp4:      0 VIDEO_INIT (KEY), 1 METADATA, 2.. VIDEO_FRAGMENT (KEY when the fragment starts on a key
                 frame). The init segment is chunk 0 because a seek (`decrypt --since`) always decrypts chunk 0.
The last chunk carries the FINAL flag. METADATA is JSON {"camera", "source", "content_type"}; the camera id
is never written in clear (the header holds only the hub-keyed camera handle).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..format.aead import FRAME_OVERHEAD
from ..format.constants import HASH_LEN, MAX_CHUNK_PLAINTEXT, PayloadKind, Suite
from ..format.errors import KeyMaterialError
from . import exitcodes
from .common import CliError, fmt_range, fsync_dir, human_bytes, key_error, load_hub_key, parse_size, parse_time, warn

MAX_PAYLOAD = MAX_CHUNK_PLAINTEXT - FRAME_OVERHEAD
SUITES = {"aes256gcm": Suite.AES_256_GCM, "chacha20poly1305": Suite.CHACHA20_POLY1305}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seal", help="seal a file or stdin into a signed, encrypted segment",
                       description="Encrypt INPUT to the recipients and sign it with the hub key, as one segment.")
    p.add_argument("--camera", required=True, metavar="ID", help="camera id (sealed inside; only a handle shows)")
    p.add_argument("--recipient", action="append", required=True, metavar="R",
                   help="sc1... string, or a file holding one or an OpenPGP public key (repeatable)")
    p.add_argument("--signing-key", required=True, metavar="FILE", help="hub signing key (keys hub-init)")
    p.add_argument("--passphrase-file", metavar="F", help="passphrase of the signing key (first line of F)")
    p.add_argument("--chunk-bytes", default="1M", metavar="N",
                   help="plain mode: bytes per chunk, 1K..32M (default 1M); suffixes K, M accepted")
    p.add_argument("--fmp4", action="store_true", help="INPUT is fragmented MP4: one chunk per fragment")
    p.add_argument("--start", metavar="TIME", help="--fmp4: wall-clock time of decode time 0 (default: now)")
    p.add_argument("--pad", metavar="MODE", help="pad chunk records: pow2[:QUANTUM] or multiple:N")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="sign the chain every N chunks (lets a reader verify a segment still being written)")
    p.add_argument("--detach-keys", action="store_true",
                   help="write the wrapped data keys to OUTPUT.keys; deleting that file shreds the segment")
    p.add_argument("--chain-state", metavar="FILE",
                   help="JSON file carrying seq and link between seals of one camera (created if missing)")
    p.add_argument("--suite", choices=sorted(SUITES), default="aes256gcm", help="chunk cipher (default %(default)s)")
    p.add_argument("input", metavar="INPUT", help="file to seal, or - for stdin")
    p.add_argument("output", metavar="OUTPUT", help="segment file to create (refuses to overwrite)")
    p.set_defaults(func=run)


def _padding(spec: str | None):  # noqa: ANN202 - Padding | None
    if not spec:
        return None
    from ..format.writer import Padding

    mode, _, q = spec.partition(":")
    if mode not in ("pow2", "multiple") or (mode == "multiple" and not q):
        raise CliError(f"--pad: {spec!r} is not a padding mode", exitcodes.USAGE,
                       hint="use pow2, pow2:4K or multiple:64K")
    try:
        return Padding(mode, parse_size(q, "--pad", 1, 1 << 30)) if q else Padding(mode)
    except ValueError as exc:
        raise CliError(f"--pad: {exc}", exitcodes.USAGE) from None


def _read_full(stream: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _plain_items(stream: BinaryIO, n: int, meta: bytes) -> Iterator[tuple[bytes, PayloadKind, bool, int]]:
    last = time.time_ns() // 1000
    yield meta, PayloadKind.METADATA, False, last
    first = True
    while buf := _read_full(stream, n):
        last = max(last, time.time_ns() // 1000)  # capture time = now, never going backwards
        yield buf, PayloadKind.DATA, first, last
        first = False
        if len(buf) < n:
            return


def _fmp4_items(stream: BinaryIO, start_us: int, meta: bytes) -> Iterator[tuple[bytes, PayloadKind, bool, int]]:
    from ..media.fmp4 import iter_fragments

    last, have_init, clamped = start_us, False, 0
    for frag in iter_fragments(stream, max_box_bytes=MAX_PAYLOAD):
        if len(frag.data) > MAX_PAYLOAD:
            raise CliError(f"fMP4 fragment of {len(frag.data)} bytes exceeds the {MAX_PAYLOAD}-byte chunk limit",
                           exitcodes.USAGE, where=f"input byte {frag.offset}",
                           hint="make shorter fragments (ffmpeg -frag_duration 1000000 or a shorter -g)")
        if frag.kind == "init":
            yield frag.data, PayloadKind.VIDEO_INIT, True, last
            if not have_init:
                yield meta, PayloadKind.METADATA, False, last
            have_init = True
            continue
        t = last
        if frag.decode_time is not None and frag.timescale:
            t = start_us + frag.decode_time * 1_000_000 // frag.timescale
        if t < last:
            clamped += 1
            t = last
        last = t
        yield frag.data, PayloadKind.VIDEO_FRAGMENT, frag.keyframe, t
    if not have_init:
        raise CliError("input holds no fMP4 init segment (ftyp+moov)", exitcodes.USAGE, where="input",
                       hint="make fragmented MP4: ffmpeg ... -movflags +frag_keyframe+empty_moov+default_base_moof")
    if clamped:
        warn(f"{clamped} fragment(s) had decode times going backwards; sealed at the previous fragment's time")


def _with_last(items: Iterator) -> Iterator[tuple[tuple, bool]]:
    end = object()
    prev = next(items, end)
    while prev is not end:
        nxt = next(items, end)
        yield prev, nxt is end
        prev = nxt


# --- chain state ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _chain_lock(path: str | None) -> Iterator[None]:
    if not path:
        yield
        return
    try:
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CliError(f"cannot open the chain state lock: {exc.strerror}", exitcodes.IO,
                       where=path + ".lock") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load_state(path: str) -> dict:
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(f"cannot read the chain state: {exc.strerror}", exitcodes.IO, where=path) from None
    except ValueError:
        raise CliError("chain state is not valid JSON", exitcodes.USAGE, where=path) from None
    if not isinstance(state, dict):
        raise CliError("chain state is not a JSON object", exitcodes.USAGE, where=path)
    return state


def _chain_entry(state: dict, handle: bytes, path: str) -> tuple[int, bytes]:
    e = state.get(handle.hex())
    if e is None:
        return 0, bytes(HASH_LEN)
    try:
        seq, link = int(e["next_seq"]), bytes.fromhex(e["prev_link"])
        if seq < 0 or len(link) != HASH_LEN:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise CliError(f"chain state entry for camera handle {handle.hex()} is malformed", exitcodes.USAGE,
                       where=path, hint='expected {"next_seq": N, "prev_link": "64 hex digits"}') from None
    return seq, link


def _save_state(path: str, state: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(Path(path).resolve().parent)


# --- the command ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from ..format.writer import SegmentWriter
    from ..keys.recipients import load_recipient

    chunk = min(parse_size(args.chunk_bytes, "--chunk-bytes", 1 << 10, 32 << 20), MAX_PAYLOAD)
    padding = _padding(args.pad)
    if args.checkpoint_every < 0:
        raise CliError("--checkpoint-every must be 0 or more", exitcodes.USAGE)
    if args.start and not args.fmp4:
        raise CliError("--start applies to --fmp4 only", exitcodes.USAGE,
                       hint="plain mode stamps each chunk with the time it is sealed")
    if not args.camera.strip():
        raise CliError("--camera must not be empty", exitcodes.USAGE)
    start_us = parse_time(args.start, "--start") if args.start else time.time_ns() // 1000
    out = Path(args.output)
    keys_out = out.with_name(out.name + ".keys")
    for p in (out, keys_out) if args.detach_keys else (out,):
        if os.path.lexists(p):
            raise CliError("output already exists; refusing to overwrite", exitcodes.USAGE, where=str(p),
                           hint="choose another OUTPUT name (each segment is its own file)")
    if not out.parent.is_dir():
        raise CliError("output directory does not exist", exitcodes.IO, where=str(out.parent))
    recipients = []
    for spec in args.recipient:
        try:
            rcpt = load_recipient(spec)
            rcpt.wrap(bytes(32), b"sealcam probe")  # fail now (e.g. a sign-only OpenPGP key), not mid-input
            recipients.append(rcpt)
        except KeyMaterialError as exc:
            raise key_error(exc, spec if len(spec) < 80 else "--recipient") from None
    hub = load_hub_key(args.signing_key, args.passphrase_file)
    try:
        handle = hub.camera_handle(args.camera)
        with _chain_lock(args.chain_state):
            state = _load_state(args.chain_state) if args.chain_state else {}
            seq, prev_link = _chain_entry(state, handle, args.chain_state) if args.chain_state else (0, bytes(32))
            sealed = _seal(args, hub, recipients, handle, seq, prev_link, chunk, padding, start_us, out, keys_out,
                           SegmentWriter)
            if args.chain_state:
                state[handle.hex()] = {"next_seq": seq + 1, "prev_link": sealed.digest.hex()}
                try:
                    _save_state(args.chain_state, state)
                except OSError as exc:
                    raise CliError(f"segment sealed, but the chain state could not be saved: {exc.strerror}",
                                   exitcodes.IO, where=args.chain_state,
                                   hint=f"set next_seq {seq + 1} and prev_link {sealed.digest.hex()} for "
                                   f"{handle.hex()} by hand, or the next seal forks the chain") from None
        signer = hub.signer_string
    finally:
        hub.close()
    print(f"sealed {out}")
    print(f"  camera handle {handle.hex()}  seq {seq}  chunks {sealed.count}  size {human_bytes(sealed.size)}")
    if sealed.first_us is not None:
        print(f"  time {fmt_range(sealed.first_us, sealed.last_us)}")
    print(f"  signer {signer}")
    print(f"  recipients {', '.join(r.label for r in recipients)}")
    if args.detach_keys:
        print(f"  keys {keys_out} (delete it to shred this segment)")
    return exitcodes.OK


def _seal(args, hub, recipients, handle, seq, prev_link, chunk, padding, start_us, out, keys_out, writer_cls):  # noqa: ANN001, ANN202
    partial = out.with_name(out.name + ".partial")
    keys_partial = keys_out.with_name(keys_out.name + ".partial")
    source = "stdin" if args.input == "-" else os.path.basename(args.input)
    meta = json.dumps({"camera": args.camera, "source": source,
                       "content_type": "video/mp4" if args.fmp4 else "application/octet-stream"}).encode()
    made: list[Path] = []
    writer = None
    try:
        src = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot read input: {exc.strerror}", exitcodes.IO, where=args.input) from None
    try:
        f = open(partial, "wb")  # noqa: SIM115
        made.append(partial)
        kf = None
        if args.detach_keys:
            kf = open(keys_partial, "wb")  # noqa: SIM115
            made.append(keys_partial)
        with f, (kf or contextlib.nullcontext()):
            writer = writer_cls(f.write, signer=hub, recipients=recipients, camera_handle=handle, seq=seq,
                                prev_link=prev_link, suite=SUITES[args.suite], padding=padding,
                                checkpoint_every=args.checkpoint_every, write_keys=kf.write if kf else None)
            items = _fmp4_items(src, start_us, meta) if args.fmp4 else _plain_items(src, chunk, meta)
            for (payload, kind, key, t), last in _with_last(items):
                writer.add_chunk(payload, kind=kind, capture_us=t, key=key, final=last)
            sealed = writer.close()
            for fh in (f, kf):
                if fh:
                    fh.flush()
                    os.fsync(fh.fileno())
        if args.detach_keys:
            os.replace(keys_partial, keys_out)
        os.replace(partial, out)
        fsync_dir(out.resolve().parent)
        return sealed
    except BaseException as exc:  # noqa: BLE001 - clean up on anything (Ctrl-C included), then re-raise
        if writer is not None:
            writer.abort()
        for p in made:
            with contextlib.suppress(OSError):
                p.unlink()
        from ..media.fmp4 import Fmp4Error

        if isinstance(exc, Fmp4Error):
            raise CliError(f"input is not fragmented MP4 sealcam can split: {exc}", exitcodes.USAGE,
                           where=args.input, hint="make it with ffmpeg ... -movflags "
                           "+frag_keyframe+empty_moov+default_base_moof, or seal it without --fmp4") from exc
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            raise CliError(f"I/O error while sealing: {exc.strerror or exc}", exitcodes.IO,
                           where=exc.filename or str(out)) from exc
        raise
    finally:
        if src is not sys.stdin.buffer:
            src.close()
