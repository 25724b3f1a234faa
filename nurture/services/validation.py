"""`nurture validate`: the config contract plus every template rendered for a sample lead."""

from __future__ import annotations

from pathlib import Path

from nurture.core.config import (
    Campaign,
    Config,
    ConfigError,
    Problem,
    SourceFile,
    Step,
    Track,
    load_config,
)
from nurture.core.personas import with_custom_fields
from nurture.core.rendering import Renderer, RenderError, sample_lead
from nurture.services import lint
from nurture.services.reach_lint import reach_problems

SAMPLE_UNSUBSCRIBE = "https://example.invalid/unsubscribe/SAMPLE-TOKEN"


def template_problems(config: Config, renderer: Renderer) -> list[Problem]:
    """Render each step (and variant) for a sample lead; report missing or failing templates
    and emails that would go out without the unsubscribe link or postal address."""
    problems: list[Problem] = []
    custom = list(config.lifecycle.custom_fields) if config.lifecycle else []
    lead = with_custom_fields(sample_lead(), custom, blank=False)
    for campaign in config.campaigns:
        source = config.sources[campaign.name]
        for ti, track in enumerate(campaign.tracks):
            for si, step in enumerate(track.steps):
                base = ("tracks", ti, "steps", si)
                variants: list[tuple[str | None, tuple]] = [(None, base)]
                if step.variants:
                    variants = [(v.id, base + ("variants", vi))
                                for vi, v in enumerate(step.variants)]
                for variant, key in variants:
                    problems += _email_problems(renderer, source, campaign, track, step,
                                                variant, key, base, lead)
    return problems


def _email_problems(renderer: Renderer, source: SourceFile, campaign: Campaign, track: Track,
                    step: Step, variant: str | None, key: tuple, base: tuple,
                    lead: dict) -> list[Problem]:
    """One email (a step, or one of its variants) rendered for the sample lead."""
    v = step.variant(variant)
    template = step.content(variant)[1]
    tkey = key + ("template",) if v and v.template else base + ("template",)
    if not renderer.has_template(template):
        return [source.problem(
            tkey, f"template {template!r} not found in {renderer.templates_dir}")]
    try:
        email = renderer.render(campaign, track, step, variant, lead, SAMPLE_UNSUBSCRIBE)
    except RenderError as exc:
        where = "subject" if "subject of" in str(exc) else "template"
        skey = (key + ("subject",) if v and v.subject else base + ("subject",))
        return [source.problem(skey if where == "subject" else tkey, str(exc))]
    problems: list[Problem] = []
    src_subject = (v.subject if v and v.subject else step.subject) or ""
    if "\n" in src_subject or "\r" in src_subject:
        problems.append(source.problem(base + ("subject",), "a subject must be one line"))
    if SAMPLE_UNSUBSCRIBE not in email.html:
        problems.append(source.problem(tkey, f"template {template!r} does not "
                                       "show the unsubscribe link "
                                       "({{ unsubscribe_url }})"))
    if campaign.sender.postal_address not in email.text:
        problems.append(source.problem(tkey, f"template {template!r} does not "
                                       "show the sender's postal address "
                                       "({{ sender.postal_address }})"))
    return problems


def validate(campaigns_dir: Path, templates_dir: Path) -> tuple[Config | None, list[Problem]]:
    """Everything `nurture validate` checks; returns the config when it is valid.

    Schema errors in one file do not hide the other checks: the lint checks
    (`nurture.services.lint`) and the template renders run on every file that parsed on its own."""
    renderer = Renderer(templates_dir)
    try:
        config = load_config(campaigns_dir)
        problems: list[Problem] = []
    except ConfigError as exc:
        config, problems = None, list(exc.problems)
    parsed = lint.parse_partial(Path(campaigns_dir))
    if config is None:
        # render what parsed, so template problems come in the same run as schema errors
        partial = Config(lifecycle=parsed.lifecycle, campaigns=tuple(c for c, _ in
                                                                     parsed.campaigns),
                         directory=Path(campaigns_dir),
                         sources={c.name: s for c, s in parsed.campaigns})
        problems += template_problems(partial, renderer)
    else:
        problems += template_problems(config, renderer)
    problems += lint.name_problems(parsed) + lint.template_field_problems(parsed, renderer)
    problems += reach_problems(parsed)
    problems += lint.persona_problems(parsed, renderer)
    unique: dict[tuple[str, int, str, str], Problem] = {}
    for p in problems:
        unique.setdefault((p.path, p.line, p.key, p.message), p)
    problems = list(unique.values())
    return (None if problems else config), problems


def load_valid_config(campaigns_dir: Path, templates_dir: Path) -> Config:
    """Like `validate` but raises `ConfigError` — what a cycle calls before doing anything."""
    config, problems = validate(campaigns_dir, templates_dir)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config
