"""Render a step into subject, HTML and text with a sandboxed, strict Jinja2 environment.

Sandboxed because marketers' templates must not reach into Python; autoescaped because lead
data is untrusted; StrictUndefined so a typo is an error at `nurture validate`, not a blank
in a customer's inbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, select_autoescape

from nurture.core.config import Campaign, Step, Track
from nurture.core.html_text import SPACES as _SPACES
from nurture.core.html_text import html_to_text, tidy
from nurture.core.sandbox import Sandbox
from nurture.core.text_template import TextEnvironment, adversarial_contexts, mismatch

__all__ = ["RenderError", "RenderedEmail", "Renderer", "html_to_text", "one_line", "sample_lead"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


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


def sample_lead() -> dict[str, Any]:
    """The lead `nurture validate` renders every template for."""
    return {"email": "jordan.lee@example.com", "first_name": "Jordan", "last_name": "Lee",
            "company": "Example Corp", "title": "Director of Marketing", "industry": "software",
            "company_size": 250, "country": "US", "timezone": "America/New_York",
            "source": "website", "utm_source": "google", "utm_medium": "cpc",
            "utm_campaign": "brand", "created_at": "2026-01-05T12:00:00+00:00"}




@dataclass(slots=True)
class _Prepared:
    """What is constant for one (campaign, track, step, variant): the context apart from the
    lead and its link, the compiled subject and templates, and how the text part is made.
    The config objects are kept to notice a reloaded config with the same names."""

    owners: tuple[Campaign, Track, Step]
    where: str
    template: str
    text_name: str | None  # a hand-written .txt.j2 sibling, else None
    context: dict[str, Any]  # the globals (range, cycler…) and campaign, track, step, sender
    subject: Any = None
    html: Template | None = None
    text: Template | None = None
    text_decided: bool = False
    error: RenderError | None = None  # at compile time; raised where rendering would fail


def _render(template: Template, variables: dict[str, Any]) -> str:
    """`template.render(variables)` without its two copies of the variables (they are built
    per message, with the environment's globals in them: see `_Prepared.context`)."""
    try:
        return "".join(template.root_render_func(template.new_context(variables, shared=True)))
    except Exception:
        return template.environment.handle_exception()  # raises, as `render` does


class Renderer:
    """Compiled templates, cached for the life of a run (rendering is the hot send path).

    Per (campaign, track, step, variant) everything but the lead is prepared once; per HTML
    template the text part is derived once (`text_template`) and checked against
    `html_to_text` before it is used. Templates it cannot be derived for are listed in
    `text_fallbacks` and keep `html_to_text` per message, as does every template when
    `derive_text` is False."""

    def __init__(self, templates_dir: Path, derive_text: bool = True) -> None:
        self.templates_dir = Path(templates_dir)
        self.env = Sandbox(
            loader=FileSystemLoader(str(self.templates_dir)),
            autoescape=select_autoescape(enabled_extensions=("html", "htm", "j2"),
                                         default_for_string=False),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            auto_reload=False)  # compiled once per renderer, as documented above
        self._subjects: dict[str, Any] = {}
        self._exists: dict[str, bool] = {}
        self._text_env = Sandbox(undefined=StrictUndefined, autoescape=False)
        self._sibling_env = self._text_env.overlay(loader=self.env.loader)
        self._derived_env = TextEnvironment(self.env) if derive_text else None
        self._derived: dict[str, Template | None] = {}
        self._prepared: dict[tuple, _Prepared] = {}
        self.text_fallbacks: dict[str, str] = {}

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
        p = self._prepare(campaign, track, step, variant)
        ctx = {**p.context, "lead": lead, "unsubscribe_url": unsubscribe_url}
        if p.subject is None and p.error:
            raise p.error
        try:
            subject = one_line(_render(p.subject, ctx))
        except Exception as exc:  # jinja raises many types; all mean "this subject is broken"
            raise RenderError(f"subject of {p.where} failed to render: {exc}") from exc
        if p.html is None and p.error:
            raise p.error
        try:
            html = _render(p.html, ctx)
        except Exception as exc:
            raise RenderError(f"template {p.template} ({p.where}) failed to render: {exc}"
                              ) from exc
        text = self._text(p, ctx, html)
        if not subject:
            raise RenderError(f"subject of {p.where} rendered empty")
        return RenderedEmail(subject, html, text)

    def _prepare(self, campaign: Campaign, track: Track, step: Step,
                 variant: str | None) -> _Prepared:
        key = (campaign.name, track.name, step.id, variant)
        p = self._prepared.get(key)
        owners = (campaign, track, step)
        if p is not None and all(a is b for a, b in zip(p.owners, owners, strict=True)):
            return p
        subject_src, template = step.content(variant)
        where = f"{campaign.name}/{step.id}" + (f" variant {variant}" if variant else "")
        text_name = re.sub(r"\.html(\.j2)?$", ".txt.j2", template)
        p = _Prepared(owners, where, template,
                      text_name if text_name != template and self.has_template(text_name)
                      else None,
                      {**self.env.globals,
                       "campaign": SimpleNamespace(name=campaign.name,
                                                   description=campaign.description),
                       "track": SimpleNamespace(name=track.name, stage=track.stage),
                       "step": SimpleNamespace(id=step.id, variant=variant),
                       "sender": SimpleNamespace(**campaign.sender.model_dump())})
        self._compile(p, subject_src)
        if p.error is None:
            self._prepared[key] = p
        return p

    def _compile(self, p: _Prepared, subject_src: str) -> None:
        """Compile what `p` renders; the first failure is kept in `p.error` with the message
        rendering it would have raised (a broken entry is not cached: tried again next time)."""
        try:
            p.subject = self._subject_template(subject_src)
        except Exception as exc:
            p.error = RenderError(f"subject of {p.where} failed to render: {exc}")
            return
        try:
            p.html = self.env.get_template(p.template)
        except Exception as exc:
            p.error = RenderError(f"template {p.template} ({p.where}) failed to render: {exc}")
            return
        if p.text_name is None:
            return
        try:
            p.text = self._sibling_env.get_template(p.text_name)
            p.text_decided = True
        except Exception as exc:
            p.error = RenderError(f"template {p.text_name} ({p.where}) failed to render: {exc}")

    def _text(self, p: _Prepared, ctx: dict[str, Any], html: str) -> str:
        if p.text_name is not None:
            if p.text is None and p.error:
                raise p.error
            try:
                return _render(p.text, ctx)
            except Exception as exc:
                raise RenderError(f"template {p.text_name} ({p.where}) failed to render: "
                                  f"{exc}") from exc
        if not p.text_decided:
            p.text = self._derived_text(p, ctx)
            p.text_decided = True
        if p.text is None:
            return html_to_text(html)
        try:
            return tidy(_render(p.text, ctx))
        except Exception:  # MarkupValue, or anything the HTML part did not raise: the slow way
            return html_to_text(html)

    def _derived_text(self, p: _Prepared, ctx: dict[str, Any]) -> Template | None:
        """The text template derived from `p.template`, once per template name and only if
        it gives `html_to_text`'s text for this context and for adversarial leads."""
        if p.template in self._derived:
            return self._derived[p.template]
        text, reason = None, "text derivation is off (derive_text=False)"
        if self._derived_env is not None:
            text, reason = self._derive(p, ctx)
        if reason:
            self.text_fallbacks[p.template] = reason
        self._derived[p.template] = text
        return text

    def _derive(self, p: _Prepared, ctx: dict[str, Any]) -> tuple[Template | None, str | None]:
        try:
            text = self._derived_env.get_template(p.template)
        except Exception as exc:  # Underivable, or a template the HTML side loads lazily
            return None, f"{type(exc).__name__}: {exc}"
        reason = mismatch(p.html, text, [ctx, *adversarial_contexts(ctx, sample_lead())],
                          html_to_text, tidy)
        return (None, reason) if reason else (text, None)
