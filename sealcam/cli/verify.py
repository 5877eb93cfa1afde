"""`sealcam verify`: full verification of segment files and of the chains between them. No key needed."""

from __future__ import annotations

import argparse
import json

from ..format.chain import HonestGap, SetReport, check_chains
from ..format.constants import RecordType
from ..format.problems import Problem
from ..format.verify import SegmentReport, verify_segment
from . import exitcodes
from .common import (
    CliError,
    collect_segments,
    error_line,
    fmt_range,
    fmt_time,
    keys_path_for,
    load_signer_pin,
    signer_string,
    warn,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="verify segments and the chain between them (no key needed)",
                       description="Check every signature, hash, index and link. Exit 0 only when the whole "
                       "set is intact; otherwise list each problem and exit 1.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="segment files, or directories searched for them")
    p.add_argument("--signer", metavar="SPEC", help="pin the hub key: an scsig1... string or a file holding one")
    p.add_argument("--keys", metavar="DIR", help="directory holding detached key files (NAME.keys)")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.set_defaults(func=run)


def problem_line(p: Problem) -> str:
    return f"{p.kind}: {p.message} ({p.where()})"


def gap_line(g: HonestGap) -> str:
    gap = g.gap
    line = f"gap: {gap.reason.name.lower().replace('_', '-')} {fmt_range(gap.from_us, gap.until_us)}"
    if gap.lost_count:
        line += f", segment(s) {gap.lost_first_seq}..{gap.lost_first_seq + gap.lost_count - 1} lost"
    if gap.detail:
        line += f" ({gap.detail})"
    return line + f", declared in {g.declared_in}"


def verify_paths(paths: list[str], pin: bytes | None, keys_dir: str | None) -> SetReport:
    reports = []
    for path in collect_segments(paths):
        try:
            reports.append(verify_segment(path, signer=pin, keys_path=keys_path_for(path, keys_dir)))
        except OSError as exc:
            raise CliError(f"cannot read: {exc.strerror}", exitcodes.IO, where=str(path)) from None
    return check_chains(reports)


def file_summary(r: SegmentReport, bad: set[str]) -> dict:
    h = r.header
    chunks = [x.time_us for x in r.records if x.type is RecordType.CHUNK]
    return {
        "path": r.path,
        "ok": r.path not in bad,
        "camera_handle": h.camera_handle.hex() if h else None,
        "segment_id": h.segment_id.hex() if h else None,
        "seq": h.seq if h else None,
        "created": fmt_time(h.created_us) if h else None,
        "signer": signer_string(h.signer) if h else None,
        "keys_detached": h.keys_detached if h else None,
        "records": len(r.records),
        "first_time": fmt_time(min(chunks)) if chunks else None,
        "last_time": fmt_time(max(chunks)) if chunks else None,
        "size": r.size,
    }


def signers_of(rep: SetReport) -> list[str]:
    return sorted({signer_string(r.header.signer) for r in rep.segments if r.header})


def run(args: argparse.Namespace) -> int:
    pin = load_signer_pin(args.signer)
    rep = verify_paths(args.paths, pin, args.keys)
    bad = {p.file for p in rep.problems}
    files = [file_summary(r, bad) for r in rep.segments]
    signers = signers_of(rep)
    if args.json:
        print(json.dumps({
            "ok": rep.ok,
            "signer_pinned": pin is not None,
            "signers": signers,
            "files": files,
            "problems": [p.to_json() for p in rep.problems],
            "gaps": [{"camera_handle": g.camera_handle.hex(), "reason": g.gap.reason.name.lower().replace("_", "-"),
                      "from": fmt_time(g.gap.from_us), "until": fmt_time(g.gap.until_us),
                      "lost_first_seq": g.gap.lost_first_seq, "lost_count": g.gap.lost_count,
                      "detail": g.gap.detail, "declared_in": g.declared_in} for g in rep.gaps],
        }, indent=2))
    else:
        for f in sorted(files, key=lambda f: (f["camera_handle"] or "", f["seq"] or 0, f["path"])):
            where = (f"camera {f['camera_handle'][:8]} seq {f['seq']}" if f["camera_handle"] else "no header")
            span = f"  {f['first_time']}..{f['last_time']}" if f["first_time"] else ""
            print(f"{'ok  ' if f['ok'] else 'FAIL'}  {f['path']}  {where}  {f['records']} records{span}")
        for g in rep.gaps:
            print(gap_line(g))
        for p in rep.problems:
            print(problem_line(p))
        n = len(rep.segments)
        verdict = "OK" if rep.ok else f"FAILED, {len(rep.problems)} problem(s)"
        print(f"{n} segment(s), {len(rep.gaps)} declared gap(s): {verdict}")
    if pin is None and signers:
        warn("signer not pinned: these segments are signed by " + ", ".join(signers)
             + "; anyone can make a validly signed segment, so pin the hub's key with --signer")
        if len(signers) > 1:
            warn("the set is signed by more than one key")
    if not rep.ok and not args.json:
        error_line(f"verification failed: {len(rep.problems)} problem(s), listed above")
    return exitcodes.OK if rep.ok else exitcodes.PROBLEMS
