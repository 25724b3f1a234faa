"""The checks that catch configs which validate but silently never work.

A typo in `activity: demo_requets` or `field: compnay_size` is valid YAML of the right type,
so the schema accepts it, and the rule then simply never matches (a misspelt activity in the
MQL rule once stopped every hand-raiser from reaching sales). These checks compare every
name against what exists, find steps and campaigns no lead can ever reach (`reach_lint`), and
render each email for every built-in persona. They run on whatever parsed, so one `nurture validate`
reports them together with schema errors in other files.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import meta, nodes

from nurture.core.config import (
    Campaign,
    Condition,
    Lifecycle,
    Problem,
    SourceFile,
    parse_file,
)
from nurture.core.domain import LEAD_FIELDS, STANDARD_ACTIVITY_TYPES
from nurture.core.personas import persona_leads, with_custom_fields
from nurture.core.rendering import Renderer, RenderError, sample_lead
from nurture.core.yaml_lines import KeyPath

UNSUB = "https://example.invalid/unsubscribe/SAMPLE-TOKEN"
RAW_MARKUP = "<script>alert(1)</script>"  # from the markup-in-fields persona


@dataclass
class Parsed:
    """Whatever of `campaigns/` parsed on its own (other files may have schema errors)."""

    lifecycle: Lifecycle | None = None
    lsource: SourceFile | None = None
    campaigns: list[tuple[Campaign, SourceFile]] = field(default_factory=list)

    @property
    def custom_fields(self) -> list[str]:
        return list(self.lifecycle.custom_fields) if self.lifecycle else []


def parse_partial(directory: Path) -> Parsed:
    """Each file validated on its own; problems are ignored here (`load_config` reports
    them), so the checks below still run on the files that are fine."""
    out = Parsed()
    ignored: list[Problem] = []
    lpath = Path(directory) / "lifecycle.yaml"
    if lpath.exists():
        out.lifecycle, out.lsource, _ = parse_file(lpath, Lifecycle, ignored)
    if Path(directory).is_dir():
        for path in sorted(Path(directory).iterdir()):
            if path.suffix in (".yaml", ".yml") and path.name != "lifecycle.yaml":
                campaign, source, _ = parse_file(path, Campaign, ignored)
                if campaign is not None and source is not None:
                    out.campaigns.append((campaign, source))
    out.campaigns.sort(key=lambda cs: (-cs[0].priority, cs[0].name))
    return out


# -- walking conditions ------------------------------------------------------------------
def _conditions(cond: Condition | None, path: KeyPath) -> Iterator[tuple[Condition, KeyPath]]:
    if cond is None:
        return
    yield cond, path
    for name in ("all", "any"):
        for i, sub in enumerate(getattr(cond, name) or ()):
            yield from _conditions(sub, path + (name, i))
    if cond.not_ is not None:
        yield from _conditions(cond.not_, path + ("not",))


def lifecycle_conditions(lc: Lifecycle) -> Iterator[tuple[Condition, KeyPath]]:
    for i, rule in enumerate(lc.scoring.fit):
        yield from _conditions(rule, ("scoring", "fit", i))
    for i, stage in enumerate(lc.buying_stages):
        yield from _conditions(stage.when, ("buying_stages", i, "when"))
    yield from _conditions(lc.routing.mql.when, ("routing", "mql", "when"))
    if lc.routing.recycle:
        yield from _conditions(lc.routing.recycle.when, ("routing", "recycle", "when"))


def campaign_conditions(c: Campaign) -> Iterator[tuple[Condition, KeyPath]]:
    yield from _conditions(c.audience.when, ("audience", "when"))
    for ti, track in enumerate(c.tracks):
        for si, step in enumerate(track.steps):
            yield from _conditions(step.when, ("tracks", ti, "steps", si, "when"))


def _suggest(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def known_activity_types(lc: Lifecycle | None) -> set[str]:
    if lc is None:
        return set(STANDARD_ACTIVITY_TYPES)
    return set(STANDARD_ACTIVITY_TYPES) | set(lc.scoring.engagement) | set(lc.activity_types)


def known_fields(lc: Lifecycle | None) -> set[str]:
    return set(LEAD_FIELDS) | set(lc.custom_fields if lc else ())


def name_problems(parsed: Parsed) -> list[Problem]:
    """Activity types and lead fields used in rules that nothing will ever provide."""
    problems: list[Problem] = []
    lc = parsed.lifecycle
    activities, fields = known_activity_types(lc), known_fields(lc)
    places: list[tuple[SourceFile, Iterator[tuple[Condition, KeyPath]]]] = []
    if lc is not None and parsed.lsource is not None:
        places.append((parsed.lsource, lifecycle_conditions(lc)))
        for i, name in enumerate(lc.custom_fields):
            if name in LEAD_FIELDS:
                problems.append(parsed.lsource.problem(
                    ("custom_fields", i), f"{name!r} is a built-in lead field; "
                    "custom_fields lists only extra attributes"))
    places += [(source, campaign_conditions(c)) for c, source in parsed.campaigns]
    for source, conds in places:
        for cond, path in conds:
            if cond.activity is not None and cond.activity not in activities:
                problems.append(source.problem(
                    path + ("activity",),
                    f"unknown activity type {cond.activity!r}{_suggest(cond.activity, activities)}"
                    ": no scoring.engagement entry or activity_types declaration in "
                    "lifecycle.yaml names it, so this rule would never match"))
            if cond.field is not None and cond.field not in fields:
                problems.append(source.problem(
                    path + ("field",),
                    f"unknown lead field {cond.field!r}{_suggest(cond.field, fields)}: not a "
                    "built-in field and not declared under custom_fields in lifecycle.yaml, "
                    "so this rule would never match"))
    return problems


# -- templates: lead fields they read -----------------------------------------------------
def _lead_attrs(ast: nodes.Node) -> set[str]:
    found: set[str] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "lead":
            if isinstance(node, nodes.Getattr):
                found.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                found.add(node.arg.value)
    return found


def template_field_problems(parsed: Parsed, renderer: Renderer) -> list[Problem]:
    """`lead.compnay` in a subject or template: caught here with a suggestion, not as a
    render failure for some leads only."""
    problems: list[Problem] = []
    fields = known_fields(parsed.lifecycle)
    for campaign, source in parsed.campaigns:
        for ti, track in enumerate(campaign.tracks):
            for si, step in enumerate(track.steps):
                base: KeyPath = ("tracks", ti, "steps", si)
                items: list[tuple[KeyPath, str, bool]] = []
                if step.subject:
                    items.append((base + ("subject",), step.subject, False))
                items.append((base + ("template",), step.template, True))
                for vi, v in enumerate(step.variants or ()):
                    if v.subject:
                        items.append((base + ("variants", vi, "subject"), v.subject, False))
                    if v.template:
                        items.append((base + ("variants", vi, "template"), v.template, True))
                for key, text, is_file in items:
                    used = _template_attrs(renderer, text) if is_file else _source_attrs(
                        renderer, text)
                    for name in sorted(used - fields):
                        problems.append(source.problem(
                            key, f"uses lead.{name}{_suggest(name, fields)}, which is neither "
                            "a built-in lead field nor declared under custom_fields in "
                            "lifecycle.yaml"))
    return problems


def _source_attrs(renderer: Renderer, text: str) -> set[str]:
    try:
        return _lead_attrs(renderer.env.parse(text))
    except Exception:  # noqa: BLE001 - syntax errors are reported by the render check
        return set()


def _template_attrs(renderer: Renderer, name: str, seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if name in seen or not renderer.has_template(name):
        return set()
    seen.add(name)
    try:
        text = renderer.env.loader.get_source(renderer.env, name)[0]
        ast = renderer.env.parse(text)
    except Exception:  # noqa: BLE001
        return set()
    found = _lead_attrs(ast)
    for ref in meta.find_referenced_templates(ast):
        if isinstance(ref, str):
            found |= _template_attrs(renderer, ref, seen)
    return found


# -- rendering for every persona ----------------------------------------------------------
def emails(campaign: Campaign) -> Iterator[tuple[int, int, str | None, KeyPath]]:
    """(track index, step index, variant, key of its template) for every email."""
    for ti, track in enumerate(campaign.tracks):
        for si, step in enumerate(track.steps):
            base: KeyPath = ("tracks", ti, "steps", si)
            if step.variants:
                for vi, v in enumerate(step.variants):
                    yield ti, si, v.id, (base + ("variants", vi, "template") if v.template
                                         else base + ("template",))
            else:
                yield ti, si, None, base + ("template",)


def persona_problems(parsed: Parsed, renderer: Renderer) -> list[Problem]:
    """Each email rendered for each persona: a failure for one kind of lead (no first
    name, a declared attribute missing…) or lead markup coming out unescaped. Emails that
    fail for the sample lead are left to the sample-lead check (reported once)."""
    problems: list[Problem] = []
    leads = persona_leads(parsed.custom_fields)
    sample = with_custom_fields(sample_lead(), parsed.custom_fields, blank=False)
    for campaign, source in parsed.campaigns:
        for ti, si, variant, key in emails(campaign):
            track, step = campaign.tracks[ti], campaign.tracks[ti].steps[si]
            v = step.variant(variant)
            template = step.content(variant)[1]
            if not renderer.has_template(template):
                continue
            try:
                renderer.render(campaign, track, step, variant, sample, UNSUB)
            except RenderError:
                continue
            failed: dict[str, list[str]] = {}
            for persona, lead in leads:
                try:
                    email = renderer.render(campaign, track, step, variant, lead, UNSUB)
                except RenderError as exc:
                    failed.setdefault(str(exc), []).append(persona.name)
                    continue
                if RAW_MARKUP in email.html:
                    failed.setdefault("lead data is inserted unescaped (a `|safe` filter?), "
                                      "so a lead's own markup would run in the email",
                                      []).append(persona.name)
            for error, names in failed.items():
                subject = error.startswith("subject of")
                where = key
                if subject:
                    where = (key[:-1] + ("subject",) if v and v.subject
                             else ("tracks", ti, "steps", si, "subject"))
                who = ", ".join(repr(n) for n in names)
                problems.append(source.problem(
                    where, f"renders for the sample lead but not for persona {who} "
                    f"(see `nurture preview --personas`): {error}"))
    return problems


# -- output formats ------------------------------------------------------------------------
def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def format_problems(problems: list[Problem], fmt: str) -> str:
    """`github`: workflow-command annotations a pull-request check shows on the lines;
    `json`: `{"ok", "count", "problems": [{file, line, key, message}]}`."""
    if fmt == "github":
        if not problems:
            return "::notice::nurture validate: no problems"
        return "\n".join(f"::error file={_gh_prop(p.path)},line={p.line},"
                         f"title={_gh_prop('nurture validate: ' + p.key)}::{_gh_data(p.message)}"
                         for p in problems)
    if fmt == "json":
        return json.dumps({"ok": not problems, "count": len(problems),
                           "problems": [{"file": p.path, "line": p.line, "key": p.key,
                                         "message": p.message} for p in problems]})
    return "\n".join(str(p) for p in problems)
