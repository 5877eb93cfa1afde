"""Export a clip: the decrypted MP4 between two times, the sealed segments it comes from, and a verification
report (JSON and a readable page) that a third party re-checks with `sealcam verify` (no key needed).

The clip's bytes are exactly what `sealcam decrypt --since FROM --until UNTIL sealed/` writes from the exported
segments, so anyone the owner lets decrypt them gets the same SHA-256.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import zipfile

from ..cli.common import fmt_time, signer_string
from ..format.chain import check_chains
from ..format.constants import PayloadKind
from ..format.decrypt import segments_in_range, select
from ..format.verify import verify_segment
from .archive import Archive


class ExportError(LookupError):
    """Nothing to export (no verified footage in the range), or the range is not usable."""


def export_clip(archive: Archive, handle: bytes, from_us: int, until_us: int, name: str | None = None
                ) -> dict[str, bytes]:
    """{file name: bytes} of an export: clip.mp4, sealed/..., report.json, report.html."""
    if until_us <= from_us:
        raise ExportError("the end of the clip must be after its start")
    cam = archive.camera(handle)
    if cam is None:
        raise ExportError("no such camera")
    bad = cam.bad_names()
    segs = [s for s in cam.segments if s.closed and s.name not in bad]
    chosen = {id(r): s for s in segs for r in [s.report]}
    picked = [chosen[id(r)] for r in segments_in_range([s.report for s in segs], from_us, until_us)]
    if not any(from_us <= r.time_us <= until_us for s in picked for r in select(s.report, from_us, until_us)[1:]):
        raise ExportError("no verified footage of this camera between those times")
    files: dict[str, bytes] = {}
    clip = bytearray()
    last_init = None
    used = []
    for seg in picked:
        recs = select(seg.report, from_us, until_us)
        if not recs:
            continue
        used.append(seg)
        for plain in archive.decrypt(seg, recs):
            if plain.kind is PayloadKind.VIDEO_INIT:
                digest = hashlib.sha256(plain.payload).digest()
                if digest == last_init:
                    continue
                last_init = digest
            if plain.kind in (PayloadKind.DATA, PayloadKind.VIDEO_INIT, PayloadKind.VIDEO_FRAGMENT):
                clip += plain.payload
    if not used or not clip:
        raise ExportError("no verified footage of this camera between those times")
    files["clip.mp4"] = bytes(clip)
    reports = []
    for seg in used:
        data = archive.reader.read(seg.name, 0, seg.size)
        fname = "sealed/" + seg.name.rsplit("/", 1)[-1]
        files[fname] = data
        reports.append(verify_segment(fname, signer=archive.signer, fileobj=io.BytesIO(data)))
    setrep = check_chains(reports)
    report = _report(handle, name, from_us, until_us, files, reports, setrep, archive.signer is not None)
    files["report.json"] = json.dumps(report, indent=2).encode()
    files["report.html"] = _page(report).encode()
    return files


def _report(handle, name, from_us, until_us, files, reports, setrep, pinned) -> dict:  # noqa: ANN001
    signers = sorted({signer_string(r.header.signer) for r in reports if r.header})
    fps = sorted({hashlib.sha256(r.header.signer).hexdigest()[:32] for r in reports if r.header})
    since, until = fmt_time(from_us), fmt_time(until_us)
    return {
        "camera": {"handle": handle.hex(), "name": name},
        "signer": signers[0] if len(signers) == 1 else signers,
        "signer_fingerprint": fps[0] if len(fps) == 1 else fps,
        "signer_pinned_when_exported": pinned,
        "range": {"from": since, "until": until},
        "clip": {"file": "clip.mp4", "bytes": len(files["clip.mp4"]),
                 "sha256": hashlib.sha256(files["clip.mp4"]).hexdigest()},
        "segments": [{"file": r.path, "seq": r.header.seq, "sha256": hashlib.sha256(files[r.path]).hexdigest(),
                      "ok": not r.problems, "created": fmt_time(r.header.created_us)} for r in reports],
        "chain": {"ok": setrep.ok, "problems": [p.to_json() for p in setrep.problems],
                  "gaps": [{"reason": g.gap.reason.name.lower().replace("_", "-"), "from": fmt_time(g.gap.from_us),
                            "until": fmt_time(g.gap.until_us), "detail": g.gap.detail} for g in setrep.gaps]},
        "recheck": f"sealcam verify --signer {signers[0] if signers else 'SCSIG'} sealed/",
        "reproduce": f"sealcam decrypt --identity YOUR_IDENTITY --since {since} --until {until} sealed/ -o clip.mp4"
                     " (same SHA-256 as clip.mp4)",
    }


def _page(r: dict) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(s['file'])}</td><td>{s['seq']}</td><td>{'ok' if s['ok'] else 'FAILED'}</td>"
                   f"<td><code>{e(s['sha256'])}</code></td></tr>" for s in r["segments"])
    probs = "".join(f"<li>{e(p['kind'])}: {e(p['message'])}</li>" for p in r["chain"]["problems"]) or "<li>none</li>"
    gaps = "".join(f"<li>{e(g['reason'])} {e(g['from'])} .. {e(g['until'])} {e(g['detail'])}</li>"
                   for g in r["chain"]["gaps"]) or "<li>none</li>"
    status = "intact" if r["chain"]["ok"] else "PROBLEMS FOUND"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>sealcam export report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}}td,th{{padding:.2em .6em;
text-align:left}}code{{word-break:break-all}}</style></head><body>
<h1>sealcam export: verification report</h1>
<dl><dt>Camera</dt><dd>{e(str(r['camera']['name'] or ''))} (handle <code>{e(r['camera']['handle'])}</code>)</dd>
<dt>Signer (hub key)</dt><dd><code>{e(str(r['signer']))}</code><br>
fingerprint <code>{e(str(r['signer_fingerprint']))}</code></dd>
<dt>Time range (UTC)</dt><dd>{e(r['range']['from'])} .. {e(r['range']['until'])}</dd>
<dt>Chain status</dt><dd><strong>{status}</strong></dd>
<dt>Clip</dt><dd>clip.mp4, {r['clip']['bytes']} bytes, SHA-256 <code>{e(r['clip']['sha256'])}</code></dd></dl>
<h2>Sealed segments</h2><table><tr><th>file</th><th>seq</th><th>verified</th><th>SHA-256</th></tr>{rows}</table>
<h2>Problems</h2><ul>{probs}</ul><h2>Declared gaps</h2><ul>{gaps}</ul>
<h2>Check it yourself</h2><p>No key needed: <code>{e(r['recheck'])}</code></p>
<p>With a key that can open the segments: <code>{e(r['reproduce'])}</code></p>
</body></html>
"""


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()
