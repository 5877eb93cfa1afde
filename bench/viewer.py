#!/usr/bin/env python3
"""Viewer latency on a 1-hour archive: time to first frame and seek latency, server side and in a real browser.

    .venv/bin/python bench/viewer.py              # 60 one-minute segments of 720p H.264 at ~4 Mbit/s
    .venv/bin/python bench/viewer.py --minutes 10 --seeks 10
    .venv/bin/python bench/viewer.py --live 10     # CPU of live follow over a 10-minute open segment

The archive is sealed like bench/seal.py's seek test (one segment per minute, one ~1 s fragment per chunk,
every fragment on a key frame, chunk 0 the init segment, a checkpoint every 5 records as the crypto service
writes), but from real ffmpeg video (60 s encoded once, re-timed for each minute) so a browser can play it.
Measured, for random times:
- baseline: in-process seek as bench/seal.py does it (light_report + select + unwrap + decrypt the chunk);
- server: HTTP request to /stream?t=T -> first fragment bytes received (headers, verification from the
  signed tail, key unwrap, decrypt, re-timing, HTTP);
- browser (Debian chromium via Playwright): seek request in the page -> the video element playing at the
  target (MSE: fetch, append, decode, first frame), for a cold start and for seeks outside the buffer.

`--live MINUTES`: one open segment written as the crypto service does (a ~1 s fragment, then a checkpoint every
5 records), the viewer polling after each record as live follow does (`Archive.poll`: list the camera folder,
fetch the new bytes, verify them). CPU time (process_time) per poll, against the baseline measured in the same
run: what the viewer did before (fetch the new tail, join it to the copy held, `verify_segment` of the whole).
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import io
import logging
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sealcam.bus.names import object_name
from sealcam.format.aead import wipe
from sealcam.format.constants import PayloadKind
from sealcam.format.decrypt import iter_plain, light_report, select, unwrap_key
from sealcam.format.verify import verify_segment
from sealcam.format.writer import SegmentWriter
from sealcam.keys.hub import HubKey
from sealcam.keys.identity import X25519Identity
from sealcam.media.fmp4 import iter_fragments
from sealcam.storage import open_storage
from sealcam.viewer import mp4
from sealcam.viewer.app import Viewer, create_app
from sealcam.viewer.archive import Archive

T0 = 1_768_046_400_000_000
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
        "--autoplay-policy=no-user-gesture-required"]


def encode_minute() -> tuple[bytes, list[tuple[int, bytes]], int]:
    import io

    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "60",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-maxrate", "4M", "-bufsize", "2M",
         "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-f", "mp4",
         "-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer", "pipe:1"],
        check=True, capture_output=True).stdout
    init, frags, scale = b"", [], 0
    for f in iter_fragments(io.BytesIO(raw)):
        if f.kind == "init":
            init = f.data
        else:
            scale = f.timescale
            frags.append((f.decode_time * 1_000_000 // f.timescale, f.data))
    return init, frags, scale


def seal(root: Path, minutes: int, hub: HubKey, owner: X25519Identity) -> tuple[bytes, int]:
    init, frags, scale = encode_minute()
    track = next(iter(mp4.timescales(init)))
    handle, prev, size = hub.camera_handle("bench"), bytes(32), 0
    for m in range(minutes):
        start = T0 + m * 60_000_000
        clock = [start]
        path = root / object_name(handle.hex(), m, start)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            w = SegmentWriter(f.write, signer=hub, recipients=[owner.recipient], camera_handle=handle, seq=m,
                              prev_link=prev, checkpoint_every=5, clock=lambda c=clock: c[0])
            w.add_chunk(init, kind=PayloadKind.VIDEO_INIT, capture_us=start, key=True)
            for off, data in frags:
                clock[0] = start + off
                w.add_chunk(bytes(mp4.shift(data, {track: m * 60 * scale})), kind=PayloadKind.VIDEO_FRAGMENT,
                            capture_us=start + off, key=True)
            clock[0] = start + 59_999_999
            prev = w.close().digest
        size += path.stat().st_size
    return handle, size


def baseline(root: Path, targets: list[int], owner: X25519Identity) -> list[float]:
    paths = sorted(root.rglob("*.seal"))
    starts = []
    for p in paths:
        rep = light_report(p)
        starts.append(min(r.time_us for r in rep.records))
    out = []
    for t in targets:
        t0 = time.perf_counter()
        rep = light_report(paths[bisect.bisect_right(starts, t) - 1])
        key = unwrap_key(rep, [owner])
        try:
            for _ in iter_plain(rep, key, select(rep, t, t)):
                pass
        finally:
            wipe(key)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def server_ttfb(port: int, cookie: str, handle: bytes, targets: list[int]) -> list[float]:
    out = []
    for t in targets:
        t0 = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("GET", f"/api/cameras/{handle.hex()}/stream?t={t}", headers={"Cookie": cookie})
        r = c.getresponse()
        assert r.status == 200, r.status
        first = r.read1(1 << 20)
        out.append((time.perf_counter() - t0) * 1e3)
        assert b"moof" in first
        c.close()
    return out


def browser(url: str, handle: bytes, targets: list[int]) -> tuple[float, list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    wait = ("t => { const p = window.sealcamViewer.player, v = p.video, w = p.wallTime();"
            " return w !== null && Math.abs(w - t) < 1.1e6 && !v.paused && v.readyState >= 3; }")
    elapsed = "() => performance.now() - window.sealcamViewer.player.metrics.request"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector("#tl-items .span.ok")
        page.evaluate(f"window.sealcamViewer.playAt({targets[0]})")
        page.wait_for_function(wait, arg=targets[0], polling="raf", timeout=30000)
        cold = page.evaluate(elapsed)
        far, near = [], []
        for t in targets[1:]:
            page.evaluate(f"window.sealcamViewer.playAt({t})")
            page.wait_for_function(wait, arg=t, polling="raf", timeout=30000)
            far.append(page.evaluate(elapsed))
            t2 = t + 5_000_000  # inside what is already buffered: no new request
            page.wait_for_function("() => window.sealcamViewer.player.bufferedEnd() - "
                                   "window.sealcamViewer.player.video.currentTime > 8", polling="raf")
            page.evaluate(f"window.sealcamViewer.playAt({t2})")
            page.wait_for_function(wait, arg=t2, polling="raf", timeout=30000)
            near.append(page.evaluate(elapsed))
        b.close()
    return cold, far, near


def live_follow(minutes: int, tmp: str | None, full_every: int) -> None:
    init, frags, scale = encode_minute()
    track = next(iter(mp4.timescales(init)))
    hub, owner = HubKey.generate(), X25519Identity.generate()
    d = Path(tempfile.mkdtemp(prefix="sealcam-live-", dir=tmp))
    try:
        handle = hub.camera_handle("bench")
        name = object_name(handle.hex(), 0, T0)
        path = d / name
        path.parent.mkdir(parents=True)
        clock = [T0]
        with open(path, "wb") as f:
            w = SegmentWriter(f.write, signer=hub, recipients=[owner.recipient], camera_handle=handle, seq=0,
                              checkpoint_every=5, clock=lambda: clock[0])
            w.add_chunk(init, kind=PayloadKind.VIDEO_INIT, capture_us=T0, key=True)
            f.flush()
            archive = Archive(open_storage(str(d)), [owner], signer=hub.public)
            archive.refresh()
            prefix, blob = handle.hex() + "/", b""
            inc: list[list[float]] = []  # per minute: CPU seconds of each poll
            full: list[list[float]] = []
            for m in range(minutes):
                inc.append([])
                full.append([])
                for k, (off, data) in enumerate(frags):
                    clock[0] = T0 + m * 60_000_000 + off
                    w.add_chunk(bytes(mp4.shift(data, {track: m * 60 * scale})), kind=PayloadKind.VIDEO_FRAGMENT,
                                capture_us=clock[0], key=True)
                    f.flush()
                    t = time.process_time()
                    archive.poll(prefix)
                    inc[-1].append(time.process_time() - t)
                    if k % full_every == 0 or (m == minutes - 1 and k == len(frags) - 1):
                        t = time.process_time()
                        size = path.stat().st_size
                        with open(path, "rb") as g:  # as before: the new tail joined to the copy held
                            g.seek(len(blob))
                            blob = blob + g.read(size - len(blob))
                        full_rep = verify_segment(name, signer=hub.public, fileobj=io.BytesIO(blob))
                        full[-1].append(time.process_time() - t)
                print(f"  minute {m + 1:2d}: {path.stat().st_size / 1e6:6.0f} MB; CPU per poll: incremental median "
                      f"{statistics.median(inc[-1]) * 1e3:6.2f} ms, full re-verify median "
                      f"{statistics.median(full[-1]) * 1e3:7.1f} ms", flush=True)
            w.abort()
        assert archive.segment(name).report == full_rep, "incremental and full verification disagree"
        polls = sum(len(x) for x in inc)
        total_inc = sum(map(sum, inc))
        total_full = sum(map(sum, full)) * full_every
        sampled = f" (every {full_every}th poll measured, scaled)" if full_every > 1 else ""
        last_inc, last_full = statistics.median(inc[-1]), statistics.median(full[-1])
        print(f"live follow, {minutes} min open segment, {polls} polls: CPU total incremental {total_inc:.2f} s, "
              f"full re-verify {total_full:.1f} s{sampled}; last minute per poll: {last_inc * 1e3:.2f} ms vs "
              f"{last_full * 1e3:.1f} ms, ratio {last_full / last_inc:.0f}x")
        archive.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def stats(ms: list[float]) -> str:
    return f"median {statistics.median(ms):6.1f} ms, max {max(ms):6.1f} ms (n={len(ms)})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--seeks", type=int, default=20)
    ap.add_argument("--tmp", help="directory for the archive (default: the system temp dir)")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--live", type=int, metavar="MINUTES", help="measure live follow's CPU over an open segment")
    ap.add_argument("--full-every", type=int, default=1, help="--live: run the baseline every N polls")
    args = ap.parse_args(argv)
    if args.live:
        return live_follow(args.live, args.tmp, args.full_every)
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    hub, owner = HubKey.generate(), X25519Identity.generate()
    d = Path(tempfile.mkdtemp(prefix="sealcam-viewer-", dir=args.tmp))
    try:
        t = time.perf_counter()
        handle, size = seal(d, args.minutes, hub, owner)
        print(f"archive: {args.minutes} min of 1280x720 H.264 ~4 Mbit/s, {args.minutes} segments, {size / 1e9:.2f} GB,"
              f" encoded + sealed in {time.perf_counter() - t:.1f} s", flush=True)
        rnd = random.Random(7)
        targets = [T0 + rnd.randrange(args.minutes * 60_000_000 - 10_000_000) for _ in range(args.seeks)]
        base = baseline(d, targets, owner)
        archive = Archive(open_storage(str(d)), [owner], signer=hub.public)
        viewer = Viewer(archive, deep_verify=False)
        t = time.perf_counter()
        viewer.start()
        print(f"viewer start (list + verify {args.minutes} segments from signed tails): "
              f"{(time.perf_counter() - t) * 1e3:.0f} ms")
        server = make_server("127.0.0.1", 0, create_app(viewer), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_port
        cookie = f"sealcam_view={viewer.token}"
        srv = server_ttfb(port, cookie, handle, targets)
        print(f"baseline in-process seek (light_report + select + unwrap + decrypt): {stats(base)}")
        print(f"server: request -> first fragment bytes:                          {stats(srv)}  "
              f"ratio {statistics.median(srv) / statistics.median(base):.2f}x baseline")
        if not args.no_browser and Path(CHROMIUM).exists():
            cold, far, near = browser(f"http://127.0.0.1:{port}/?token={viewer.token}", handle, targets)
            print(f"browser: time to first frame (page ready, play request -> playing at target): {cold:.0f} ms")
            print(f"browser: seek outside the buffer -> playing at target: {stats(far)}")
            print(f"browser: seek inside the buffer -> playing at target:  {stats(near)}")
        server.shutdown()
        archive.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
