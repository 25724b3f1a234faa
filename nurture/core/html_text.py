"""The plain-text part of an email from its HTML: the converter and its final tidy step.

Kept apart from `rendering` because `text_template` derives text templates with the very same
token rules (one definition, so the fast path and this one cannot drift apart)."""

from __future__ import annotations

import re
from html import unescape

SPACES = re.compile(r"[ \t]+")
TOKEN = re.compile(r"<!--.*?-->|<!.*?>|<(/?)([a-zA-Z][a-zA-Z0-9]*)([^>]*)>|([^<]+|<)", re.S)
HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
BLOCK = frozenset({"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "li", "table", "hr"})
SKIP = frozenset({"style", "script", "head", "title"})


def html_to_text(html: str) -> str:
    """A readable plain-text part from the HTML one (links kept as `text (url)`).

    A single regex pass over tags and text rather than `html.parser`: the layout is our own
    well-formed HTML. The loop stays inline (no call per token); only `<a>` tags, a few per
    message, go through a helper. Templates usually skip this per message: see
    `text_template`, which derives the same text from the template once."""
    parts: list[str] = []
    skip = 0
    href: str | None = None
    for closing, tag, attrs, data in TOKEN.findall(html):
        if data:
            if not skip:
                parts.append(data)
            continue
        tag = tag.lower()  # "" for a comment or doctype: matches nothing below
        if tag in SKIP:
            skip = max(0, skip - 1) if closing else skip + 1
        elif tag == "a":
            href = _link(closing, attrs, href, parts)
        elif tag in BLOCK:
            parts.append("\n")
            if tag == "li" and not closing:
                parts.append("- ")
    return tidy(unescape("".join(parts)))


def _link(closing: str, attrs: str, href: str | None, parts: list[str]) -> str | None:
    """An `<a>` tag: the opening one yields its (unescaped) href, or None; the closing one
    appends ` (href)` after the link text. Returns the href still open."""
    if not closing:
        found = HREF.search(attrs)
        return unescape(next(g for g in found.groups() if g is not None)) if found else None
    if href:
        parts.append(f" ({href})")
        return None
    return href


def tidy(raw: str) -> str:
    """Runs of spaces collapsed, lines stripped, at most one blank line in a row, and a
    single trailing newline.

    Whole-string passes rather than one regex call per line (this runs per message): runs of
    spaces and tabs never span a line break, and once lines are stripped a blank line is
    just two line breaks in a row. `str.replace` rather than regexes: several times faster
    on text this size."""
    raw = raw.replace("\t", " ")
    while "  " in raw:
        raw = raw.replace("  ", " ")
    text = "\n".join([line.strip() for line in raw.splitlines()])
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"
