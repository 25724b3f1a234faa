"""Shared bits of the static pages (preview gallery, outbox viewer, simulation report).

Pages open from disk with no server and no network: styles are inline, no CDN, no fonts to
fetch. Rendered emails are shown in `sandbox`ed `srcdoc` iframes so their markup can never
script the page around them.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

esc = html.escape

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2937;
background:#f8fafc;line-height:1.45}
header.top{background:#1b2a4a;color:#fff;padding:.8rem 1.2rem}
header.top a{color:#c7d2fe}
header.top h1{font-size:1.2rem;margin:0}
main{padding:1rem 1.2rem;max-width:1400px;margin:0 auto}
h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
h3{font-size:1rem;margin:1rem 0 .4rem}
a{color:#2f5bea}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.35rem .55rem;border-bottom:1px solid #e5e7eb;font-size:.88rem;
vertical-align:top}
th{background:#f1f5f9;font-weight:600}
.table-wrap{overflow-x:auto;max-width:100%}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:.8rem 1rem;
margin:.6rem 0}
.muted{color:#6b7280}
.warn{color:#92400e;background:#fef3c7;border-radius:4px;padding:.1rem .4rem}
.err{color:#991b1b;background:#fee2e2;border-radius:4px;padding:.1rem .4rem}
.ok{color:#065f46;background:#d1fae5;border-radius:4px;padding:.1rem .4rem}
ul.warnings{margin:.3rem 0;padding-left:1.2rem}
.layout{display:grid;grid-template-columns:260px minmax(0,1fr);gap:1rem}
nav.side{font-size:.88rem;background:#fff;border:1px solid #e5e7eb;border-radius:8px;
padding:.6rem .8rem;align-self:start;position:sticky;top:.5rem;max-height:95vh;overflow:auto}
nav.side ul{list-style:none;padding-left:.8rem;margin:.2rem 0}
nav.side>ul{padding-left:0}
nav.side .here{font-weight:700}
.frames{display:flex;gap:1rem;flex-wrap:wrap;align-items:flex-start}
.frame{overflow-x:auto;max-width:100%}
.frame iframe{border:1px solid #cbd5e1;border-radius:6px;background:#fff;display:block}
.frame .label{font-size:.8rem;color:#6b7280;margin-bottom:.2rem}
pre.text{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #e5e7eb;
border-radius:6px;padding:.7rem;font-size:.85rem;max-height:420px;overflow:auto}
dl.headers{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem .8rem;
margin:0;font-size:.88rem}
dl.headers dt{font-weight:600;color:#374151}
dl.headers dd{margin:0;word-break:break-all}
.pills a{display:inline-block;margin:.15rem .2rem .15rem 0;padding:.15rem .55rem;
border-radius:999px;background:#e0e7ff;text-decoration:none;font-size:.82rem}
.pills a.here{background:#2f5bea;color:#fff}
.filters{display:flex;flex-wrap:wrap;gap:.5rem;margin:.5rem 0}
.filters input,.filters select{padding:.35rem .5rem;border:1px solid #cbd5e1;border-radius:6px;
font-size:.9rem;min-width:0}
.stat{display:inline-block;margin:.2rem 1rem .2rem 0}
.stat b{font-size:1.3rem;display:block}
@media (max-width:760px){
 .layout{grid-template-columns:minmax(0,1fr)}
 nav.side{position:static;max-height:180px}
 header.top h1{font-size:1rem;word-break:break-word}
 main{padding:.6rem}
 th,td{font-size:.8rem;padding:.3rem .35rem;overflow-wrap:anywhere}
}
"""


def page(title: str, body: str, *, back: str | None = None, script: str = "",
         head: str = "") -> str:
    back_link = f' · <a href="{esc(back)}">index</a>' if back else ""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style>{head}</head><body>"
            f'<header class="top"><h1>{esc(title)}</h1>'
            f'<div class="muted" style="color:#c7d2fe">nurture{back_link}</div></header>'
            f"<main>{body}</main>{script}</body></html>\n")


def iframe(html_doc: str, width: int, height: int, title: str) -> str:
    """A sandboxed preview of an email (no scripts, no same-origin, no top navigation)."""
    return (f'<iframe sandbox="" referrerpolicy="no-referrer" loading="lazy" '
            f'title="{esc(title)}" width="{width}" height="{height}" '
            f'style="width:{width}px;height:{height}px" srcdoc="{esc(html_doc, quote=True)}">'
            "</iframe>")


def write(path: Path, text: str) -> None:
    """Atomic: a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-") or "x"
