"""The gallery, the outbox viewer and the simulation report in a real headless Chromium:
no console errors, screenshots at desktop (1280 px) and mobile (390 px) widths, no sideways
scrolling on a phone, and what a person looks for is on the page. Skips without Chromium."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser import Browser, find_chromium  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not found (apt-get install "
                                "chromium, or set NURTURE_CHROMIUM); browser tests skipped")
SHOTS = Path(os.environ.get("NURTURE_SCREENSHOTS",
                           Path(tempfile.gettempdir()) / "nurture-screenshots"))


@pytest.fixture(scope="module")
def browser():
    b = Browser(CHROMIUM)
    yield b
    b.close()


def look(b: Browser, url: str, name: str) -> None:
    """Open at both widths, screenshot both, and require no console errors and no page
    wider than a phone."""
    for width in (1280, 390):
        b.errors.clear()
        b.open(url, width)
        b.screenshot(SHOTS / f"{name}-{width}.png")
        assert b.errors == [], b.errors
        assert b.scroll_width() <= width, f"{name} scrolls sideways at {width}px"


def test_preview_gallery(browser, tmp_path):
    from nurture.core.config import load_config
    from nurture.core.rendering import Renderer
    from nurture.views.preview import build_preview

    build_preview(load_config(REPO / "campaigns"), Renderer(REPO / "templates"),
                  tmp_path / "pv", "https://nurture.example")
    look(browser, (tmp_path / "pv" / "index.html").as_uri(), "preview-index")
    assert browser.js("document.querySelectorAll('nav.side a').length") == 17
    page = tmp_path / "pv/emails/inbound-saas/product/demo-invite/b/markup-in-fields.html"
    look(browser, page.as_uri(), "preview-email")
    assert browser.js("document.getElementById('subject').textContent") == \
        "<b>Mallory</b>{{ 7*7 }}, want a walkthrough?"
    frames = browser.js("Array.from(document.querySelectorAll('iframe')).map(f => "
                        "[f.getAttribute('sandbox'), f.width])")
    assert frames == [["", "800"], ["", "375"]]
    # the sandboxed email really rendered (its layout has a body with text)
    assert browser.js("document.querySelector('pre.text').textContent.includes("
                      "'Book your 20-minute demo')")


def test_outbox_viewer_filters_all_messages(browser, tmp_path, config):
    from nurture.adapters.delivery.outbox import OutboxTransport
    from nurture.core.messages import build_message
    from nurture.core.rendering import RenderedEmail

    outbox = OutboxTransport(tmp_path)
    msgs = []
    for i in range(1, 451):
        camp = "webinar-followup" if i % 3 == 0 else "inbound-saas"
        step = "customer-story" if camp == "webinar-followup" else "case-study"
        msgs.append(build_message(i, {"email": f"lead{i}@example.com"},
                                  config.campaign(camp).sender,
                                  RenderedEmail(f"Subject {i}", f"<p>Hello {i}</p>",
                                                f"Hello {i}\n"),
                                  "https://n.example/u/t", datetime(2026, 11, 2, tzinfo=UTC),
                                  camp, step, None))
    outbox.send_many(msgs)
    outbox.close()
    look(browser, (tmp_path / "index.html").as_uri(), "outbox-index")
    assert browser.js("document.querySelectorAll('#rows tr').length") == 200
    browser.js("var s=document.getElementById('f-campaign'); s.value='webinar-followup';"
               "s.dispatchEvent(new Event('change'))")
    assert browser.js("document.getElementById('shown').textContent").startswith(
        "150 of 150 matching")
    browser.js("var t=document.getElementById('f-to'); t.value='lead3@';"
               "t.dispatchEvent(new Event('input'))")
    assert browser.js("Array.from(document.querySelectorAll('#rows tr td:nth-child(2)'))"
                      ".map(td => td.textContent)") == ["lead3@example.com"]
    browser.js("document.querySelector('#rows a').click()")
    browser._wait_event("Page.loadEventFired")
    browser.settle()
    assert browser.js("location.pathname").endswith("/0000/touch-3.html")
    look(browser, browser.js("location.href"), "outbox-message")
    assert "lead3@example.com" in browser.js("document.querySelector('dl.headers')"
                                             ".textContent")


def test_simulation_report(browser, tmp_path):
    from nurture.devtools.simulate import simulate
    from nurture.views.simulation_html import report_html

    result = simulate(REPO / "campaigns", REPO / "templates", 7, synthetic=120,
                      baseline_dir=REPO / "campaigns",
                      start=datetime(2026, 11, 2, 8, tzinfo=UTC))
    (tmp_path / "sim.html").write_text(report_html(result))
    look(browser, (tmp_path / "sim.html").as_uri(), "simulation")
    assert browser.js("document.querySelectorAll('svg polyline').length") == 4
    assert browser.js("document.querySelector('h1').textContent") == \
        "Campaign simulation — proposed vs baseline"
    json.dumps(result)
