"""`sealcam inspect`: show a segment's structure without any key. Never decrypts, never prints plaintext.

What it shows is what storage can see: header fields, recipients' stanza types and key ids, and per record
its place, size, index, flags and time. It does not check signatures (that is `sealcam verify`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..format.constants import MAGIC, RecordFlag, RecordType
from ..format.errors import FormatError
from ..format.reader import Damage, read_magic, scan
from ..format.records import ChunkHead, Gap, SegmentHeader, decode_index_body, decode_keys_body
from . import exitcodes
from .common import CliError, collect_segments, fmt_range, fmt_time, human_bytes, signer_string

_SUITE = {1: "aes256gcm", 2: "chacha20poly1305"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show a segment's structure (no key needed, no plaintext)",
                       description="Show header, recipients and records of segment files. Needs no key and "
                       "checks no signature: use `sealcam verify` for that.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="segment files or directories")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _flags(flags: int) -> list[str]:
    return [f.name for f in (RecordFlag.KEY, RecordFlag.FINAL, RecordFlag.KEYS_DETACHED) if flags & f]


def _stanzas(stanzas: list) -> list[dict]:
    return [{"type": s.type.name.lower().replace("_", "-"), "key_id": s.key_id.hex(), "length": len(s.body)}
            for s in stanzas]


def inspect_file(path: Path) -> dict:
    """Everything visible without a key, as a JSON-able dict."""
    info: dict = {"path": str(path), "size": None, "magic": None, "version": None, "header": None,
                  "recipients": None, "records": [], "checkpoints": [], "index": None, "trailer": None,
                  "damage": []}
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot read: {exc.strerror}", exitcodes.IO, where=str(path)) from None
    with f:
        info["size"] = f.seek(0, 2)
        f.seek(0)
        head = f.read(len(MAGIC))
        info["magic"] = head[:7].decode("latin-1") if head else ""
        info["version"] = head[7] if len(head) == len(MAGIC) else None
        f.seek(0)
        try:
            read_magic(f)
        except FormatError as exc:
            info["damage"].append({"offset": exc.offset, "kind": exc.kind, "message": exc.message})
            return info
        for item in scan(f):
            if isinstance(item, Damage):
                e = item.error
                info["damage"].append({"offset": item.offset, "kind": e.kind, "message": e.message,
                                       "resumed_at": item.resumed_at})
                continue
            try:
                _record(info, item)
            except FormatError as exc:
                info["damage"].append({"offset": exc.offset, "kind": exc.kind, "message": exc.message})
    hdr = info["header"]
    if hdr and hdr["keys_detached"]:
        _detached_keys(info, path)
    return info


def _record(info: dict, rec) -> None:  # noqa: ANN001 - reader.RawRecord
    t, off, length, body = rec.header.type, rec.offset, rec.header.total, bytes(rec.body)
    if t is RecordType.HEADER:
        h = SegmentHeader.decode(body, rec.header.flags, off)
        info["header"] = {
            "offset": off, "suite": _SUITE.get(h.suite, str(h.suite)), "camera_handle": h.camera_handle.hex(),
            "segment_id": h.segment_id.hex(), "seq": h.seq, "created": fmt_time(h.created_us),
            "created_us": h.created_us, "prev_link": h.prev_link.hex(), "signer": signer_string(h.signer),
            "keys_detached": h.keys_detached, "keys_digest": h.keys_digest.hex(),
        }
    elif t is RecordType.KEYS:
        info["recipients"] = _stanzas(decode_keys_body(body, off))
    elif t is RecordType.CHUNK:
        c = ChunkHead.decode(body, off)
        info["records"].append({"offset": off, "length": length, "index": c.index, "type": "chunk",
                                "flags": _flags(rec.header.flags), "time": fmt_time(c.capture_us),
                                "time_us": c.capture_us})
    elif t is RecordType.GAP:
        g = Gap.decode(body, off)
        info["records"].append({"offset": off, "length": length, "index": g.index, "type": "gap", "flags": [],
                                "time": fmt_time(g.from_us), "time_us": g.from_us,
                                "gap": {"reason": g.reason.name.lower().replace("_", "-"), "from": fmt_time(g.from_us),
                                        "until": fmt_time(g.until_us), "lost_first_seq": g.lost_first_seq,
                                        "lost_count": g.lost_count, "detail": g.detail}})
    elif t is RecordType.CHECKPOINT:
        info["checkpoints"].append({"offset": off, "count": int.from_bytes(body[:4], "big")})
    elif t is RecordType.INDEX:
        info["index"] = {"offset": off, "length": length, "entries": len(decode_index_body(body, off))}
    elif t is RecordType.TRAILER:
        info["trailer"] = {"offset": off, "count": int.from_bytes(body[:4], "big"),
                           "index_offset": int.from_bytes(body[4:12], "big")}


def _detached_keys(info: dict, path: Path) -> None:
    kp = path.with_name(path.name + ".keys")
    info["keys_file"] = str(kp)
    try:
        data = kp.read_bytes()
    except OSError:
        info["keys_file_present"] = False
        return
    info["keys_file_present"] = True
    try:
        if not data.startswith(MAGIC):
            raise FormatError("detached key file has no sealcam magic", offset=0)
        info["recipients"] = _stanzas(decode_keys_body(data[len(MAGIC) + 16 :], len(MAGIC)))
    except FormatError as exc:
        info["damage"].append({"offset": exc.offset, "kind": exc.kind, "message": f"{kp.name}: {exc.message}"})


def _text(info: dict) -> list[str]:
    out = [f"{info['path']}  ({human_bytes(info['size'] or 0)})"]
    ver = info["version"]
    out.append(f"  magic      {info['magic']!r} version {ver if ver is not None else '?'}")
    h = info["header"]
    if h:
        out += [
            f"  suite      {h['suite']}",
            f"  camera     handle {h['camera_handle']}",
            f"  segment    id {h['segment_id']}  seq {h['seq']}",
            f"  created    {h['created']}",
            f"  prev_link  {h['prev_link']}" + ("  (chain start)" if set(h["prev_link"]) == {"0"} else ""),
            f"  signer     {h['signer']}  (not checked here; use sealcam verify)",
            f"  keys       {'DETACHED in ' + info.get('keys_file', '?') if h['keys_detached'] else 'inline'}"
            + ("" if info.get("keys_file_present", True) else "  (file absent: segment shredded or kept apart)"),
        ]
    else:
        out.append("  header     MISSING")
    for r in info["recipients"] or []:
        out.append(f"  recipient  {r['type']}  key id {r['key_id']}")
    recs = info["records"]
    times = [r["time_us"] for r in recs if r["type"] == "chunk"]
    span = f", {fmt_range(min(times), max(times))}" if times else ""
    out.append(f"  records    {len(recs)} chained{span}")
    out.append(f"  {'offset':>12} {'length':>10} {'index':>6}  type   flags      time")
    for r in recs:
        flags = ",".join(r["flags"]) or "-"
        line = f"  {r['offset']:>12} {r['length']:>10} {r['index']:>6}  {r['type']:<6} {flags:<10} {r['time']}"
        if r["type"] == "gap":
            g = r["gap"]
            line += f"  gap {g['reason']} {g['from']}..{g['until']}"
            if g["lost_count"]:
                line += f" lost seq {g['lost_first_seq']}+{g['lost_count']}"
            if g["detail"]:
                line += f" ({g['detail']})"
        out.append(line)
    for c in info["checkpoints"]:
        out.append(f"  checkpoint at byte {c['offset']} covers {c['count']} record(s)")
    ix, tr = info["index"], info["trailer"]
    ix_text = f"at byte {ix['offset']}, {ix['entries']} entries" if ix else "absent"
    tr_text = f"at byte {tr['offset']}, {tr['count']} records" if tr else "absent  (not closed: live, crashed or cut)"
    out.append(f"  index      {ix_text}")
    out.append(f"  trailer    {tr_text}")
    for d in info["damage"]:
        resumed = d.get("resumed_at")
        more = f"; resumed at byte {resumed}" if resumed is not None else ""
        out.append(f"  DAMAGE     {d['kind']}: {d['message']} (byte {d['offset']}{more})")
    return out


def run(args: argparse.Namespace) -> int:
    infos = [inspect_file(p) for p in collect_segments(args.paths)]
    if args.json:
        print(json.dumps({"files": infos}, indent=2))
    else:
        print("\n\n".join("\n".join(_text(i)) for i in infos))
    return exitcodes.PROBLEMS if any(i["damage"] or not i["header"] for i in infos) else exitcodes.OK
