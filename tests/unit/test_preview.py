"""`nurture preview`: every email × persona rendered into a static gallery, with checks."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from nurture.core.config import load_config
from nurture.core.rendering import Renderer
from nurture.views.preview import build_preview

REPO = Path(__file__).resolve().parents[2]


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    return tmp_path / "campaigns", tmp_path / "templates"


def test_shipped_campaigns_gallery(tmp_path):
    out = build_preview(load_config(REPO / "campaigns"), Renderer(REPO / "templates"),
                        tmp_path / "pv", "https://nurture.example")
    assert out["emails"] == 17 and out["leads"] == 10 and out["renderings"] == 170
    assert out["render_errors"] == 0
    index = (tmp_path / "pv" / "index.html").read_text()
    pages = list((tmp_path / "pv" / "emails").rglob("*.html"))
    assert len(pages) == 170
    # lead markup is shown as text, never as markup, in the page around the sandboxed email
    evil = (tmp_path / "pv" / "emails" / "inbound-saas" / "education" / "buyers-guide"
            / "markup-in-fields.html").read_text()
    assert "<script>alert(1)</script>" not in evil
    assert "&lt;b&gt;Mallory&lt;/b&gt;{{ 7*7 }}" in evil
    assert '<iframe sandbox=""' in evil
    # no external assets: nothing to fetch from a CDN
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?:', index)


def test_checks_flag_what_bites_in_inboxes(tmp_path):
    campaigns, templates = _copy(tmp_path)
    tpl = templates / "inbound-saas" / "case-study.html.j2"
    text = tpl.read_text()
    text = text.replace("{% block body %}", "{% block body %}<img src=\"https://x.example/a.png\">"
                        "<a href=\"http://acme.example/insecure\">insecure</a>"
                        "<p>" + "padding " * 14000 + "</p>", 1)
    tpl.write_text(text)
    base = (templates / "base.html.j2").read_text()
    (templates / "base.html.j2").write_text(base.replace("{{ unsubscribe_url }}", "#"))
    out = build_preview(load_config(campaigns), Renderer(templates), tmp_path / "pv",
                        "https://nurture.example")
    page = (tmp_path / "pv" / "emails" / "inbound-saas" / "product" / "case-study"
            / "grade-b-research.html").read_text()
    assert "Gmail clips messages over 102 KB" in page
    assert "1 image(s) without alt text" in page
    assert "http://acme.example/insecure" in page and "not on https" in page
    assert "no unsubscribe link in the HTML" in page
    assert out["warning_kinds"]["no unsubscribe link in the HTML ({{ unsubscribe_url }})"] \
        == 170


def test_render_error_for_one_persona_is_listed(tmp_path):
    campaigns, templates = _copy(tmp_path)
    path = campaigns / "inbound-saas.yaml"
    path.write_text(path.read_text().replace("subject: Lead scoring in five steps",
                                             "subject: \"{{ lead.first_name.upper() }}\""))
    out = build_preview(load_config(campaigns), Renderer(templates), tmp_path / "pv",
                        "https://nurture.example")
    assert out["render_errors"] == 2  # no first name: an error; blank: an empty subject
    index = (tmp_path / "pv" / "index.html").read_text()
    assert "does not render for persona no-first-name" in index
    assert "does not render for persona empty-fields" in index and "rendered empty" in index
