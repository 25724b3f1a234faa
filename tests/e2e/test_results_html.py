"""The results page (`nurture report html`) in a real headless Chromium: no console errors,
no network, readable at desktop and phone widths, charts and sections present."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_browser import CHROMIUM, SHOTS, browser, look  # noqa: E402,F401 - fixture

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not found")


def test_results_page(browser, tmp_path):  # noqa: F811
    import os

    env = {**os.environ, "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo' / 'nurture.db'}"}
    subprocess.run([sys.executable, "-m", "nurture", "demo", "--dir", str(tmp_path / "demo"),
                    "--leads", "150", "--days", "4"], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=300)
    out = tmp_path / "results.html"
    subprocess.run([sys.executable, "-m", "nurture", "report", "html", "--out", str(out)],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
    text = out.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "") and "<script" not in text
    look(browser, out.as_uri(), "results")
    ids = browser.js("Array.from(document.querySelectorAll('section')).map(s => s.id)")
    assert ids == ["steps", "ab", "sources", "cohorts", "attribution", "deliverability"]
    assert browser.js("document.querySelectorAll('svg.bars rect').length") > 5
    assert browser.js("document.body.innerText.includes('two-proportion z-test')") or \
        browser.js("document.body.innerText.includes('No step with two variants')")
    browser.screenshot(SHOTS / "results-full.png", full_page=True)
