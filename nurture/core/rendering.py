"""Render a step into subject, HTML and text with a sandboxed, strict Jinja2 environment.

Sandboxed because marketers' templates must not reach into Python; autoescaped because lead
data is untrusted; StrictUndefined so a typo is an error at `nurture validate`, not a blank
in a customer's inbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nurture.core.config import Campaign, Step, Track

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_SPACES = re.compile(r"[ \t]+")


class RenderError(Exception):
    """A template or subject failed to render; the message names which."""


@dataclass(slots=True, frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def one_line(subject: str) -> str:
    """Subjects are one line: control characters (CR/LF…) become spaces, so lead data can
    never inject a header."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", subject)).strip()


_TOKEN = re.compile(r"<!--.*?-->|<!.*?>|<(/?)([a-zA-Z][a-zA-Z0-9]*)([^>]*)>|([^<]+|<)", re.S)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_BLOCK = frozenset({"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "li", "table", "hr"})
_SKIP = frozenset({"style", "script", "head", "title"})


def html_to_text(html: str) -> str:
    """A readable plain-text part from the HTML one (links kept as `text (url)`).

    A single regex pass over tags and text rather than `html.parser`: this runs once per
    message on the hot send path and the layout is our own well-formed HTML. The loop stays
    inline (no call per token) for the same reason; only `<a>` tags, a few per message, go
    through a helper."""
    parts: list[str] = []
    skip = 0
    href: str | None = None
    for closing, tag, attrs, data in _TOKEN.findall(html):
        if data:
            if not skip:
                parts.append(data)
            continue
        tag = tag.lower()  # "" for a comment or doctype: matches nothing below
        if tag in _SKIP:
            skip = max(0, skip - 1) if closing else skip + 1
        elif tag == "a":
            href = _link(closing, attrs, href, parts)
        elif tag in _BLOCK:
            parts.append("\n")
            if tag == "li" and not closing:
                parts.append("- ")
    return _tidy(unescape("".join(parts)))


def _link(closing: str, attrs: str, href: str | None, parts: list[str]) -> str | None:
    """An `<a>` tag: the opening one yields its (unescaped) href, or None; the closing one
    appends ` (href)` after the link text. Returns the href still open."""
    if not closing:
        found = _HREF.search(attrs)
        return unescape(next(g for g in found.groups() if g is not None)) if found else None
    if href:
        parts.append(f" ({href})")
        return None
    return href


def _tidy(raw: str) -> str:
    """Runs of spaces collapsed, lines stripped, at most one blank line in a row, and a
    single trailing newline."""
    lines = [_SPACES.sub(" ", line).strip() for line in raw.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"


def sample_lead() -> dict[str, Any]:
    """The lead `nurture validate` renders every template for."""
    return {"email": "jordan.lee@example.com", "first_name": "Jordan", "last_name": "Lee",
            "company": "Example Corp", "title": "Director of Marketing", "industry": "software",
            "company_size": 250, "country": "US", "timezone": "America/New_York",
            "source": "website", "utm_source": "google", "utm_medium": "cpc",
            "utm_campaign": "brand", "created_at": "2026-01-05T12:00:00+00:00"}


class Renderer:
    """Compiled templates, cached for the life of a run (rendering is the hot send path)."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = Path(templates_dir)
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(self.templates_dir)),
            autoescape=select_autoescape(enabled_extensions=("html", "htm", "j2"),
                                         default_for_string=False),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self._subjects: dict[str, Any] = {}
        self._exists: dict[str, bool] = {}
        self._text_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined,
                                                      autoescape=False)

    def has_template(self, name: str) -> bool:
        found = self._exists.get(name)
        if found is None:
            found = self._exists[name] = (self.templates_dir / name).is_file()
        return found

    def _subject_template(self, source: str):
        tpl = self._subjects.get(source)
        if tpl is None:
            tpl = self._subjects[source] = self._text_env.from_string(source)
        return tpl

    def render(self, campaign: Campaign, track: Track, step: Step, variant: str | None,
               lead: dict[str, Any], unsubscribe_url: str) -> RenderedEmail:
        subject_src, template = step.content(variant)
        ctx = {
            "lead": lead,
            "campaign": SimpleNamespace(name=campaign.name, description=campaign.description),
            "track": SimpleNamespace(name=track.name, stage=track.stage),
            "step": SimpleNamespace(id=step.id, variant=variant),
            "sender": SimpleNamespace(**campaign.sender.model_dump()),
            "unsubscribe_url": unsubscribe_url,
        }
        where = f"{campaign.name}/{step.id}" + (f" variant {variant}" if variant else "")
        try:
            subject = one_line(self._subject_template(subject_src).render(ctx))
        except Exception as exc:  # jinja raises many types; all mean "this subject is broken"
            raise RenderError(f"subject of {where} failed to render: {exc}") from exc
        try:
            html = self.env.get_template(template).render(ctx)
        except Exception as exc:
            raise RenderError(f"template {template} ({where}) failed to render: {exc}") from exc
        text_name = re.sub(r"\.html(\.j2)?$", ".txt.j2", template)
        if text_name != template and self.has_template(text_name):
            try:
                text = self._text_env.overlay(loader=self.env.loader).get_template(
                    text_name).render(ctx)
            except Exception as exc:
                raise RenderError(f"template {text_name} ({where}) failed to render: {exc}"
                                  ) from exc
        else:
            text = html_to_text(html)
        if not subject:
            raise RenderError(f"subject of {where} rendered empty")
        return RenderedEmail(subject, html, text)
