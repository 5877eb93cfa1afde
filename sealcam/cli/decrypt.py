"""`sealcam decrypt`: verify, then decrypt segments in (camera, seq) order to one stream and/or extracted files.

Verification comes first: each closed segment is checked from its signed tail (light_report), anything else
fully (verify_segment), then the chains between segments. Every record's digest is checked against the
signed index as it is read, so a record altered after the check still stops decryption. An unfinished segment
declared by a signed RESTART gap gives the chunks its last checkpoint signs (chain.restart_prefix), no more.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from ..format.aead import wipe
from ..format.chain import SetReport, check_chains, restart_prefix
from ..format.constants import STREAM_KINDS, PayloadKind
from ..format.decrypt import (
    DecryptStats,
    VerificationFailed,
    iter_plain,
    light_report,
    segments_in_range,
    select,
    unwrap_key,
)
from ..format.errors import KeyMaterialError, NoMatchingIdentity
from ..format.verify import SegmentReport, verify_segment
from . import exitcodes
from .common import (
    CliError,
    collect_segments,
    fmt_range,
    human_bytes,
    key_error,
    keys_path_for,
    load_identities,
    load_signer_pin,
    parse_time,
    warn,
)
from .verify import problem_line, signers_of

_EXTRACT = {PayloadKind.THUMBNAIL: "jpg", PayloadKind.EVENT: "json", PayloadKind.METADATA: "json"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decrypt", help="verify and decrypt segments",
                       description="Verify, then decrypt segments in (camera, seq) order. Refuses footage that "
                       "fails verification unless --force.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="segment files, or directories searched for them")
    p.add_argument("--identity", action="append", default=[], metavar="FILE",
                   help="owner identity file (keys owner-init) or OpenPGP private key; repeatable")
    p.add_argument("--passphrase-file", metavar="F", help="passphrase of the identity (first line of F)")
    p.add_argument("--gpg", action="store_true", help="unwrap OpenPGP stanzas with the real gpg and its agent")
    p.add_argument("--gpg-homedir", metavar="D", help="gpg home directory (default: gpg's own, or $GNUPGHOME)")
    p.add_argument("--signer", metavar="SPEC", help="pin the hub key: an scsig1... string or a file holding one")
    p.add_argument("--keys", metavar="DIR", help="directory holding detached key files (NAME.keys)")
    p.add_argument("--since", metavar="TIME", help="start at the key frame at or before TIME (ISO 8601 or epoch s)")
    p.add_argument("--until", metavar="TIME", help="stop after the last chunk captured at or before TIME")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write the stream here (- for stdout; default stdout when it is not a terminal)")
    p.add_argument("--force", action="store_true",
                   help="decrypt despite problems; every problem let through is listed on stderr (exit 1)")
    p.add_argument("--extract", metavar="DIR", help="write thumbnails, events and metadata as files in DIR")
    p.add_argument("--events", metavar="FILE", help="write the event records (motion/object/tamper events and "
                   "thumbnail descriptions) as JSON lines to FILE (- for stdout)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=run)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled, self._last = max(total, 1), 0, enabled, 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.1:
            self._last = now
            pct = min(100, self.done * 100 // self.total)
            print(f"\rdecrypting {human_bytes(self.done)} / {human_bytes(self.total)} ({pct}%)  ",
                  end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.enabled and self._last:
            print(f"\rdecrypting {human_bytes(self.total)} / {human_bytes(self.total)} (100%)  ", file=sys.stderr)


def _stderr_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _open_output(args: argparse.Namespace):  # noqa: ANN202 - (file object | None, partial path | None)
    if args.output == "-" or (args.output is None and not args.extract and not args.events):
        if args.output is None and sys.stdout.isatty():
            raise CliError("refusing to write decrypted footage to a terminal", exitcodes.USAGE,
                           hint="give -o FILE, or -o - to force stdout, or pipe it (e.g. | mpv -)")
        return sys.stdout.buffer, None
    if args.output is None:
        return None, None
    out = Path(args.output)
    if not out.parent.is_dir():
        raise CliError("output directory does not exist", exitcodes.IO, where=str(out.parent))
    partial = out.with_name(out.name + ".partial")
    try:
        return open(partial, "wb"), partial  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot write: {exc.strerror}", exitcodes.IO, where=str(partial)) from None


def _verify(paths: list[Path], pin: bytes | None, keys_dir: str | None) -> list[SegmentReport]:
    reports = []
    for p in paths:
        kp = keys_path_for(p, keys_dir)
        try:
            reports.append(light_report(p, signer=pin, keys_path=kp) or verify_segment(p, signer=pin, keys_path=kp))
        except OSError as exc:
            raise CliError(f"cannot read: {exc.strerror}", exitcodes.IO, where=str(p)) from None
    return reports


def run(args: argparse.Namespace) -> int:  # noqa: C901 - one linear pipeline, kept together on purpose
    if not args.identity and not args.gpg:
        raise CliError("no identity given", exitcodes.USAGE, hint="give --identity FILE or --gpg")
    pin = load_signer_pin(args.signer)
    since = parse_time(args.since, "--since") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None
    if since is not None and until is not None and until < since:
        raise CliError("--until is before --since", exitcodes.USAGE)
    paths = collect_segments(args.paths)
    identities = load_identities(args.identity, args.passphrase_file, args.gpg, args.gpg_homedir)
    reports = _verify(paths, pin, args.keys)
    setrep = check_chains(reports)
    let_through = list(setrep.problems)
    if setrep.problems:
        for p in setrep.problems:
            print(("let through: " if args.force else "") + problem_line(p), file=sys.stderr)
        if not args.force:
            raise CliError(f"refusing to decrypt: verification found {len(setrep.problems)} problem(s)",
                           exitcodes.PROBLEMS, hint="`sealcam verify` explains them; --force decrypts what still "
                           "authenticates and lists every problem let through")
    signers = signers_of(setrep)
    if pin is None and signers:
        warn(f"signer not pinned (segments signed by {', '.join(signers)}); pin it with --signer")
    segs = sorted((r for r in reports if r.header is not None),
                  key=lambda r: (r.header.camera_handle, r.header.seq, r.header.created_us, r.path))
    segs = segments_in_range(segs, since, until)
    upto: dict[int, int] = {}  # id(report) -> chained records usable: an unfinished segment's signed prefix
    if not args.force:  # damage a signed gap explains (an unfinished segment)
        segs = [r for r in segs if not r.problems or _recover(r, setrep, upto)]
    if len({r.header.camera_handle for r in segs}) > 1 and (args.output or not args.extract):
        warn("these segments come from more than one camera: the output stream concatenates them")
    extract = Path(args.extract) if args.extract else None
    if extract:
        try:
            extract.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot create the extract directory: {exc.strerror}", exitcodes.IO, where=str(extract)
                           ) from None
    plans = [(r, select(r, since, until, upto=upto.get(id(r)))) for r in segs]
    total = sum(x.length for _, recs in plans for x in recs)
    if args.events == "-" and args.output == "-":
        raise CliError("--events - and -o - both want stdout", exitcodes.USAGE, hint="send one of them to a file")
    out, partial = _open_output(args)
    args.events_file = _open_events(args.events)
    progress = _Progress(total, _stderr_tty() and not args.quiet)
    stats = DecryptStats()
    cameras: dict[str, str] = {}
    ok = False
    try:
        last_init: dict[bytes, bytes] = {}
        for rep, recs in plans:
            _one(rep, recs, identities, args, out, extract, stats, progress, last_init, cameras)
        progress.finish()
        if out is not None:
            out.flush()
            if partial is not None:
                os.fsync(out.fileno())
        ok = True
    finally:
        if args.events_file not in (None, sys.stdout):
            args.events_file.close()
        if partial is not None:
            out.close()
            if ok:
                os.replace(partial, args.output)
            else:
                with contextlib.suppress(OSError):
                    partial.unlink()
    let_through += stats.let_through
    for p in stats.let_through:
        print("let through: " + problem_line(p), file=sys.stderr)
    if not args.quiet:
        dest = args.output if args.output not in (None, "-") else ("stdout" if out is not None else "nowhere")
        print(f"decrypted {len(plans)} segment(s), {stats.chunks} chunk(s), {human_bytes(stats.bytes)} to {dest}"
              + (f"; extracted to {extract}" if extract else ""), file=sys.stderr)
        for handle, name in sorted(cameras.items()):
            print(f"  camera {name!r} (handle {handle})", file=sys.stderr)
    if let_through:
        print(f"sealcam: --force let {len(let_through)} problem(s) through (listed above)", file=sys.stderr)
        return exitcodes.PROBLEMS
    return exitcodes.OK


def _recover(rep: SegmentReport, setrep: SetReport, upto: dict[int, int]) -> bool:
    """An unfinished segment a signed gap explains: keep its checkpoint-signed prefix when a RESTART gap of a
    later segment declares it (noting how much), else skip it with a note. True: decrypt it (up to upto)."""
    prefix = restart_prefix(rep, setrep)
    if prefix is None:
        print(f"skipped {rep.path}: unfinished segment, explained by a signed gap record", file=sys.stderr)
        return False
    seg = f"{rep.path} (segment {rep.header.seq})"
    left = prefix.total_chunks - len(prefix.chunks)
    if not prefix.chunks:
        print(f"skipped {seg}: unfinished segment, declared by the signed restart gap in {prefix.declared_in}; "
              f"no checkpoint signs any of its {left} chunk(s)", file=sys.stderr)
        return False
    span = fmt_range(prefix.chunks[0].time_us, prefix.chunks[-1].time_us)
    print(f"recovered {seg}: unfinished segment, declared by the signed restart gap in {prefix.declared_in}; "
          f"decrypting its first {len(prefix.chunks)} chunk(s), {span}, signed by its last checkpoint; "
          f"{left} unsigned chunk(s) after it left out", file=sys.stderr)
    upto[id(rep)] = rep.verified_count
    return True


def _open_events(spec: str | None):  # noqa: ANN202 - text file | None
    if spec is None:
        return None
    if spec == "-":
        return sys.stdout
    try:
        return open(spec, "w", encoding="utf-8")  # noqa: SIM115 - closed at the end of run()
    except OSError as exc:
        raise CliError(f"cannot write: {exc.strerror}", exitcodes.IO, where=spec) from None


def _event_record(plain, rep: SegmentReport, events_file, thumb_names: dict) -> None:  # noqa: ANN001
    """One EVENT chunk: JSON line out (with where it was found); a thumbnail description names the JPEG next."""
    try:
        ev = json.loads(bytes(plain.payload))
    except ValueError:
        warn(f"{rep.path}: EVENT record {plain.index} is not JSON; skipped in --events")
        return
    if not isinstance(ev, dict):
        return
    if ev.get("t") == "thumb" and isinstance(ev.get("sha256"), str):
        thumb_names[ev["sha256"]] = str(ev.get("event_id", ""))[:32]
    if events_file is not None:
        line = dict(ev, segment_seq=rep.header.seq, record=plain.index, camera_handle=rep.header.camera_handle.hex())
        events_file.write(json.dumps(line, sort_keys=True) + "\n")


def _unwrap(rep: SegmentReport, identities: list, force: bool) -> bytearray | None:
    try:
        return unwrap_key(rep, identities)
    except NoMatchingIdentity as exc:
        gpg_errors = [e for i in identities for e in getattr(i, "errors", [])]
        hint = "`sealcam inspect FILE` lists the recipients' key ids; `sealcam keys show IDENTITY` shows yours"
        if gpg_errors:
            hint = f"{gpg_errors[-1]}; {hint}"
        if force:
            warn(f"skipped, no identity can open it: {rep.path}")
            return None
        raise CliError("none of your identities can decrypt this segment", exitcodes.KEY, where=rep.path,
                       hint=hint) from exc
    except KeyMaterialError as exc:
        raise key_error(exc, rep.path) from None


def _one(rep, recs, identities, args, out, extract, stats, progress, last_init, cameras) -> None:  # noqa: ANN001
    lengths = {j: r.length for j, r in enumerate(rep.records)}
    handle = rep.header.camera_handle
    key = _unwrap(rep, identities, args.force)
    if key is None:
        return
    full = args.since is None and args.until is None
    thumb_names: dict[str, str] = {}  # sha256 of a JPEG -> event id, from the EVENT chunk describing it
    try:
        for plain in iter_plain(rep, key, recs, force=args.force, stats=stats, full_read=full, reuse_buffer=True):
            progress.add(lengths.get(plain.index, 0))
            if plain.kind is PayloadKind.VIDEO_INIT:
                digest = hashlib.sha256(plain.payload).digest()
                if last_init.get(handle) == digest:
                    continue  # same init segment as the previous segment of this camera: write it once
                last_init[handle] = digest
            if plain.kind in STREAM_KINDS and out is not None:
                out.write(plain.payload)
            if plain.kind is PayloadKind.METADATA:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    cameras[handle.hex()[:8]] = str(json.loads(bytes(plain.payload))["camera"])
            if plain.kind is PayloadKind.EVENT:
                _event_record(plain, rep, args.events_file, thumb_names)
            if extract is not None and plain.kind in _EXTRACT:
                name = f"{handle.hex()[:8]}-{rep.header.seq:06d}-{plain.index:06d}"
                if plain.kind is PayloadKind.THUMBNAIL:
                    ev = thumb_names.get(hashlib.sha256(plain.payload).hexdigest())
                    name += f"-{ev}" if ev and ev.isalnum() else ""
                (extract / f"{name}.{_EXTRACT[plain.kind]}").write_bytes(plain.payload)
    except VerificationFailed as exc:
        for p in exc.problems:
            print(problem_line(p), file=sys.stderr)
        raise CliError("refusing to continue: a record failed verification while decrypting", exitcodes.PROBLEMS,
                       where=rep.path, hint="--force skips what does not authenticate and lists it") from None
    finally:
        wipe(key)
