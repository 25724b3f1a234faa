"""`nurture preview`: a static HTML gallery of every email a campaign can send.

Every campaign × track × step × variant is rendered (by the same `Renderer` and
`build_message`/`to_eml` the send phase uses) for the built-in personas and for real leads
from the store, and checked for what bites in real inboxes: Gmail clipping, images without
alt text, non-https links, missing unsubscribe link or postal address, long subjects, and
render errors for some kinds of lead. The gallery opens from disk: no server, no network.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import default as default_policy
from html import unescape
from pathlib import Path
from typing import Any

from nurture.core.config import Campaign, Config
from nurture.core.messages import build_message, to_eml
from nurture.core.personas import persona_leads
from nurture.core.rendering import Renderer, RenderError
from nurture.core.unsubscribe import unsubscribe_url
from nurture.views.html_kit import esc, iframe, page, slug, write

GMAIL_CLIP_BYTES = 102 * 1024
SUBJECT_MAX = 60           # characters most mobile clients show before cutting
PREVIEW_TOKEN = "PREVIEW-TOKEN"
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ALT = re.compile(r"\balt\s*=", re.I)
_LINK = re.compile(r"""<a\b[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))[^>]*>(.*?)</a>""",
                   re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")
_PREHEADER = re.compile(r"<div[^>]*display\s*:\s*none[^>]*>(.*?)</div>", re.I | re.S)


@dataclass
class Rendered:
    """One email for one lead: what the gallery shows and what the checks found."""

    campaign: str
    track: str
    step: str
    variant: str | None
    who: str              # persona name or the real lead's email
    who_label: str
    subject: str = ""
    preheader: str = ""
    html: str = ""
    text: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def email_id(self) -> str:
        return f"{self.campaign}/{self.track}/{self.step}" + (
            f"/{self.variant}" if self.variant else "")

    @property
    def file(self) -> str:
        parts = [self.campaign, self.track, self.step] + ([self.variant] if self.variant else [])
        return "emails/" + "/".join(slug(p) for p in parts) + f"/{slug(self.who)}.html"


def check(r: Rendered, unsubscribe: str, postal_address: str) -> list[str]:
    """Plain-language warnings for one rendered email."""
    out = []
    size = len(r.html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        out.append(f"HTML is {size / 1024:.0f} KB: Gmail clips messages over 102 KB and hides "
                   "the rest (including the unsubscribe link) behind 'View entire message'")
    missing_alt = [m for m in _IMG.findall(r.html) if not _ALT.search(m)]
    if missing_alt:
        out.append(f"{len(missing_alt)} image(s) without alt text: screen readers and clients "
                   "that block images show nothing in their place")
    insecure = sorted({u for u, _ in r.links if u != unsubscribe and u.startswith("http:")})
    if insecure:
        out.append("link(s) not on https (flagged by spam filters, warned about by browsers): "
                   + ", ".join(insecure[:5]))
    if unsubscribe not in r.html:
        out.append("no unsubscribe link in the HTML ({{ unsubscribe_url }}): required by law "
                   "and by Gmail/Yahoo bulk-sender rules")
    if postal_address not in r.text:
        out.append("the sender's postal address is missing (CAN-SPAM requires it)")
    if len(r.subject) > SUBJECT_MAX:
        out.append(f"subject is {len(r.subject)} characters: phones show about {SUBJECT_MAX}, "
                   "the rest is cut off")
    if not r.preheader:
        out.append("no preheader: the inbox shows the first words of the body instead")
    return out


def render_one(renderer: Renderer, campaign: Campaign, ti: int, si: int, variant: str | None,
               who: str, label: str, lead: dict[str, Any], public_url: str) -> Rendered:
    track = campaign.tracks[ti]
    step = track.steps[si]
    r = Rendered(campaign.name, track.name, step.id, variant, who, label)
    url = unsubscribe_url(public_url, PREVIEW_TOKEN)
    try:
        email = renderer.render(campaign, track, step, variant, lead, url)
    except RenderError as exc:
        r.error = str(exc)
        r.warnings.append(f"does not render for {label}: {exc}")
        return r
    r.subject, r.html, r.text = email.subject, email.html, email.text
    found = _PREHEADER.search(email.html)
    r.preheader = " ".join(unescape(_TAGS.sub("", found.group(1))).split()) if found else ""
    msg = build_message(0, lead | {"email": lead.get("email") or "lead@example.invalid"},
                        campaign.sender, email, url, datetime.now(UTC), campaign.name,
                        step.id, variant)
    parsed = BytesParser(policy=default_policy).parsebytes(to_eml(msg))
    r.headers = [(k, str(parsed[k])) for k in ("From", "To", "Reply-To", "Subject",
                                                "List-Unsubscribe", "List-Unsubscribe-Post")
                 if parsed[k] is not None]
    for m in _LINK.finditer(email.html):
        href = unescape(next(g for g in m.groups()[:3] if g is not None))
        r.links.append((href, " ".join(unescape(_TAGS.sub("", m.group(4))).split())))
    r.warnings = check(r, url, campaign.sender.postal_address)
    return r


def render_all(config: Config, renderer: Renderer, leads: list[tuple[str, str, dict]],
               public_url: str, only: list[str] | None = None) -> list[Rendered]:
    """Every email of the (selected) campaigns for every (id, label, lead)."""
    out = []
    for campaign in config.campaigns:
        if only and campaign.name not in only:
            continue
        for ti, track in enumerate(campaign.tracks):
            for si, step in enumerate(track.steps):
                for variant in [v.id for v in step.variants] if step.variants else [None]:
                    for who, label, lead in leads:
                        out.append(render_one(renderer, campaign, ti, si, variant, who, label,
                                              lead, public_url))
    return out


def preview_leads(config: Config, real: list[dict[str, Any]], personas: bool
                  ) -> list[tuple[str, str, dict]]:
    leads: list[tuple[str, str, dict]] = []
    if personas:
        custom = list(config.lifecycle.custom_fields) if config.lifecycle else []
        leads += [(p.name, f"persona {p.name} — {p.description}", lead)
                  for p, lead in persona_leads(custom)]
    leads += [(f"lead-{lead['email']}", f"lead {lead['email']}", lead) for lead in real]
    return leads


# -- pages ---------------------------------------------------------------------------------
def _nav(items: list[Rendered], current: Rendered | None, prefix: str) -> str:
    tree: dict[str, dict[str, list[Rendered]]] = {}
    firsts: dict[str, Rendered] = {}
    for r in items:
        if r.email_id not in firsts:
            firsts[r.email_id] = r
            tree.setdefault(r.campaign, {}).setdefault(r.track, []).append(r)
    html = ['<nav class="side" aria-label="emails"><ul>']
    for camp, tracks in tree.items():
        html.append(f"<li><b>{esc(camp)}</b><ul>")
        for track, emails in tracks.items():
            html.append(f"<li>{esc(track)}<ul>")
            for r in emails:
                here = ' class="here"' if current and current.email_id == r.email_id else ""
                name = r.step + (f" / {r.variant}" if r.variant else "")
                html.append(f'<li><a{here} href="{prefix}{esc(r.file)}">{esc(name)}</a></li>')
            html.append("</ul></li>")
        html.append("</ul></li>")
    html.append("</ul></nav>")
    return "".join(html)


def _email_page(r: Rendered, siblings: list[Rendered], items: list[Rendered]) -> str:
    depth = r.file.count("/")
    up = "../" * depth
    pills = "".join(
        f'<a{" class=here" if s.who == r.who else ""} href="{up}{esc(s.file)}">'
        f'{esc(s.who)}{" ⚠" if s.warnings else ""}</a>' for s in siblings)
    if r.error:
        body = f'<div class="card"><span class="err">render error</span> {esc(r.error)}</div>'
    else:
        warn = ("<ul class=warnings>" + "".join(f'<li><span class="warn">warning</span> '
                                                 f"{esc(w)}</li>" for w in r.warnings)
                + "</ul>") if r.warnings else '<span class="ok">no warnings</span>'
        headers = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in r.headers)
        links = "".join(f'<tr><td>{esc(t) or "<i>(no text)</i>"}</td><td>'
                        f'<a href="{esc(u)}" rel="noopener noreferrer" target="_blank">'
                        f"{esc(u)}</a></td></tr>" for u, t in r.links)
        size = len(r.html.encode("utf-8")) / 1024
        body = (f'<div class="card"><div class="muted">Subject</div>'
                f'<div style="font-size:1.15rem;font-weight:600" id="subject">{esc(r.subject)}'
                f'</div><div class="muted">Preheader: {esc(r.preheader) or "<i>none</i>"}</div>'
                f'<div class="muted">{size:.1f} KB HTML · {len(r.links)} link(s)</div>'
                f"<h3>Checks</h3>{warn}</div>"
                f'<div class="card"><h3>Headers</h3><dl class="headers">{headers}</dl></div>'
                f'<h3>HTML</h3><div class="frames">'
                f'<div class="frame"><div class="label">desktop (800 px)</div>'
                f"{iframe(r.html, 800, 900, 'desktop rendering')}</div>"
                f'<div class="frame"><div class="label">mobile (375 px)</div>'
                f"{iframe(r.html, 375, 900, 'mobile rendering')}</div></div>"
                f'<h3>Text part</h3><pre class="text">{esc(r.text)}</pre>'
                f'<h3>Links</h3><div class="table-wrap"><table><thead><tr><th>text</th>'
                f"<th>URL</th></tr></thead><tbody>{links}</tbody></table></div>")
    main = (f'<div class="muted">{esc(r.campaign)} › {esc(r.track)} › {esc(r.step)}'
            f'{" › variant " + esc(r.variant) if r.variant else ""}</div>'
            f'<div class="card"><div class="muted">Rendered for: {esc(r.who_label)}</div>'
            f'<div class="pills">{pills}</div></div>{body}')
    return page(f"{r.email_id} — {r.who}",
                f'<div class="layout">{_nav(items, r, up)}<div>{main}</div></div>',
                back=f"{up}index.html")


def _index_page(items: list[Rendered], seconds: float, leads: int) -> str:
    emails: dict[str, Rendered] = {}
    for r in items:
        emails.setdefault(r.email_id, r)
    with_warn = [r for r in items if r.warnings]
    rows = "".join(
        f'<tr><td><a href="{esc(r.file)}">{esc(r.email_id)}</a></td><td>{esc(r.who)}</td>'
        f'<td>{"<span class=err>error</span> " if r.error else ""}'
        f"{'<br>'.join(esc(w) for w in r.warnings)}</td></tr>" for r in with_warn)
    grid = []
    for eid, first in emails.items():
        variants = [r for r in items if r.email_id == eid]
        n_warn = sum(1 for r in variants if r.warnings)
        status = (f'<span class="warn">{n_warn} with warnings</span>' if n_warn
                  else '<span class="ok">clean</span>')
        grid.append(f'<tr><td>{esc(first.campaign)}</td><td>{esc(first.track)}</td>'
                    f'<td><a href="{esc(first.file)}">{esc(first.step)}'
                    f'{" / " + esc(first.variant) if first.variant else ""}</a></td>'
                    f"<td>{esc(first.subject or '(render error)')}</td><td>{status}</td></tr>")
    body = (f'<div class="card"><span class="stat"><b>{len(emails)}</b>emails</span>'
            f'<span class="stat"><b>{leads}</b>personas / leads</span>'
            f'<span class="stat"><b>{len(items)}</b>renderings</span>'
            f'<span class="stat"><b id="warning-count">{sum(len(r.warnings) for r in items)}'
            f"</b>warnings</span>"
            f'<span class="stat"><b>{seconds:.1f} s</b>to build</span></div>'
            f'<h2>Emails by campaign, track and step</h2><div class="table-wrap"><table>'
            f"<thead><tr><th>campaign</th><th>track</th><th>step</th><th>subject (first "
            f"persona)</th><th>checks</th></tr></thead><tbody>{''.join(grid)}</tbody></table>"
            f'</div><h2 id="warnings">All warnings</h2>'
            + (f'<div class="table-wrap"><table><thead><tr><th>email</th><th>for</th>'
               f"<th>warning</th></tr></thead><tbody>{rows}</tbody></table></div>"
               if rows else '<p class="ok">No warnings.</p>'))
    return page("Campaign preview", f'<div class="layout">{_nav(items, None, "")}'
                f"<div>{body}</div></div>")


def write_gallery(items: list[Rendered], out: Path, seconds: float, leads: int) -> Path:
    out = Path(out)
    by_email: dict[str, list[Rendered]] = {}
    for r in items:
        by_email.setdefault(r.email_id, []).append(r)
    for r in items:
        write(out / r.file, _email_page(r, by_email[r.email_id], items))
    index = out / "index.html"
    write(index, _index_page(items, seconds, leads))
    return index


def build_preview(config: Config, renderer: Renderer, out: Path, public_url: str,
                  campaigns: list[str] | None = None, real_leads: list[dict] | None = None,
                  personas: bool = True) -> dict[str, Any]:
    """Render, check and write the gallery; returns the figures the CLI prints."""
    t0 = time.perf_counter()
    leads = preview_leads(config, real_leads or [], personas)
    items = render_all(config, renderer, leads, public_url, campaigns)
    seconds = time.perf_counter() - t0
    index = write_gallery(items, out, seconds, len(leads))
    return {"index": str(index), "emails": len({r.email_id for r in items}),
            "leads": len(leads), "renderings": len(items),
            "warnings": sum(len(r.warnings) for r in items),
            "render_errors": sum(1 for r in items if r.error),
            "seconds": round(time.perf_counter() - t0, 2),
            "warning_kinds": _kinds(items)}


def _kinds(items: list[Rendered]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for r in items:
        for w in r.warnings:
            k = re.sub(r"\d+", "N", w.split(":")[0])[:60]
            kinds[k] = kinds.get(k, 0) + 1
    return kinds
