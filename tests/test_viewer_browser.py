"""The viewer in a real browser: Debian's chromium driven by Playwright, against `create_app` over archives
sealed by the real writer from real ffmpeg video (tests/viewer_archive.py)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from viewer_archive import EVENT_ID, T0, build, ffmpeg_available, tamper

from sealcam.storage import open_storage
from sealcam.viewer.app import Viewer, create_app
from sealcam.viewer.archive import Archive

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
        "--autoplay-policy=no-user-gesture-required"]


def _why_not() -> str | None:
    if not Path(CHROMIUM).exists():
        return "needs Debian's chromium (bash scripts/setup.sh --test)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs playwright (the test extra)"
    return ffmpeg_available()


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))]


class Served:
    def __init__(self, root: Path, owner) -> None:  # noqa: ANN001
        from werkzeug.serving import make_server

        self.archive = Archive(open_storage(str(root)), [owner])
        self.viewer = Viewer(self.archive)
        self.viewer.start()
        self.server = make_server("127.0.0.1", 0, create_app(self.viewer), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/?token={self.viewer.token}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.viewer.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.archive.close()


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    d = tmp_path_factory.mktemp("viewer")
    good = build(d / "good")
    bad = tamper(good, d / "tampered")
    return good, bad


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, request):  # noqa: ANN001, ANN201
    ctx = browser.new_context(viewport={"width": 1100, "height": 900}, timezone_id="UTC")
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, errors


def _served(root: Path, owner) -> Served:  # noqa: ANN001
    return Served(root, owner)


def _wall(page) -> float:  # noqa: ANN001
    return page.evaluate("window.sealcamViewer.player.wallTime()")


def test_chromium_plays_h264_through_mse(page) -> None:  # noqa: ANN001
    page.goto("about:blank")
    assert page.evaluate("MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.64001f\"')")
    assert page.evaluate("MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.42c00d\"')")


def test_timeline_thumbnail_playback_and_seek(archives, page, tmp_path: Path) -> None:  # noqa: ANN001
    import cv2
    import numpy as np

    good, _ = archives
    srv = _served(good.root, good.owner)
    try:
        page.goto(srv.url)
        page.wait_for_selector("#tl-items .span.ok")
        assert page.locator("#tl-items .gap").count() == 1  # the signed FEED_LOST gap
        assert page.locator("#tl-items .suspicious").count() == 0
        assert "feed-lost" in page.locator("#gaps").inner_text()
        # the event and its decrypted thumbnail
        card = page.locator(".event-card").first
        assert "person" in card.inner_text()
        img = card.locator("img")
        img.wait_for()
        page.wait_for_function("() => document.querySelector('.event-card img').naturalWidth > 0")
        assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [160, 120]
        shot = tmp_path / "timeline.png"
        page.locator("#timeline").screenshot(path=str(shot))
        px = cv2.imread(str(shot))
        green = np.count_nonzero((px[:, :, 1] > 120) & (px[:, :, 2] < 80) & (px[:, :, 0] < 120))
        red = np.count_nonzero((px[:, :, 2] > 180) & (px[:, :, 1] < 50))
        assert green > 200 and red == 0, (green, red)
        # click the event: playback starts at the event (T0+12 s)
        card.click()
        page.wait_for_function("() => { const v = document.getElementById('video');"
                               " return !v.paused && v.currentTime > 0 && v.readyState >= 3; }", timeout=15000)
        assert abs(_wall(page) - (T0 + 12_000_000)) < 2_500_000
        # seek by keyboard on the timeline into run 2 (past the gap): decode times restart there
        target = T0 + 75_000_000
        page.evaluate(f"window.sealcamViewer.state.cursor = {target}")
        page.locator("#timeline").focus()
        page.keyboard.press("ArrowRight")  # +10 s
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => Math.abs(window.sealcamViewer.player.wallTime() - {target + 10_000_000}) < 1.5e6"
                               " && !document.getElementById('video').paused", timeout=15000)
        t1 = _wall(page)
        page.wait_for_timeout(1200)
        assert _wall(page) > t1  # it keeps playing
        frame = tmp_path / "video.png"
        page.locator("#video").screenshot(path=str(frame))
        vid = cv2.imread(str(frame))
        assert vid.std() > 20  # a picture (testsrc2 colour bars), not a black box
    finally:
        srv.close()


def test_tampered_archive_shows_the_problems(archives, page, tmp_path: Path) -> None:  # noqa: ANN001
    import cv2
    import numpy as np

    _, bad = archives
    srv = _served(bad.root, bad.owner)
    try:
        page.goto(srv.url)
        page.wait_for_selector("#problems:not([hidden])")
        # full verification runs in the background; the page picks up its verdict by itself
        page.wait_for_function("() => document.getElementById('problems').innerText.includes('modified')",
                               timeout=20000)
        text = page.locator("#problems").inner_text()
        assert "missing-segment" in text and "modified" in text
        assert page.locator("#tl-items .suspicious").count() >= 2
        shot = tmp_path / "tampered.png"
        page.locator("#timeline").screenshot(path=str(shot))
        px = cv2.imread(str(shot))
        assert np.count_nonzero((px[:, :, 2] > 180) & (px[:, :, 1] < 50)) > 100  # red hatching is drawn
        assert page.locator(".event-card").count() == 1  # the intact part still shows its event
    finally:
        srv.close()


def test_token_required(archives, browser) -> None:  # noqa: ANN001
    good, _ = archives
    srv = _served(good.root, good.owner)
    try:
        ctx = browser.new_context()
        pg = ctx.new_page()
        resp = pg.goto(srv.url.split("?")[0] + "api/cameras")
        assert resp.status == 403
        resp = pg.goto(srv.url.split("?")[0] + f"api/cameras/{good.handle.hex()}/stream?t={T0}")
        assert resp.status == 403
        ctx.close()
    finally:
        srv.close()


def test_event_id_links_thumbnail(archives) -> None:  # noqa: ANN001
    from sealcam.viewer import timeline as TL
    from sealcam.viewer.events import EventScanner

    good, _ = archives
    a = Archive(open_storage(str(good.root)), [good.owner])
    try:
        a.refresh()
        sc = EventScanner(a)
        cam = a.camera(good.handle)
        evs, th = [], []
        for s in cam.segments:
            f = sc.scan(s)
            evs += f.events
            th += f.thumbs
        out = TL.events(evs, th)
        assert [(e["id"], e["label"], e["from"], e["until"]) for e in out] == [
            (EVENT_ID, "person", T0 + 12_000_000, T0 + 16_000_000)]
        assert th[0]["event_id"] == EVENT_ID  # linked by the "t": "thumb" record's SHA-256 (container-v1 §3.4.1)
        assert out[0]["thumb"] == {"seq": 1, "index": th[0]["index"]}
        jpeg = sc.thumbnail(cam.segments[1], th[0]["index"])
        assert jpeg[:3] == b"\xff\xd8\xff"
    finally:
        a.close()
        shutil.rmtree(good.root / ".nothing", ignore_errors=True)
