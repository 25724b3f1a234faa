"""The config contract: the spec's examples and the real campaigns validate; every problem is
reported at once as `file:line: key.path: message`."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.core.config import ConfigError, Problem, load_config
from nurture.services.validation import validate

REPO_ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS_DIR = REPO_ROOT / "campaigns"
TEMPLATES_DIR = REPO_ROOT / "templates"

LIFECYCLE = """\
scoring:
  fit:
    - {field: title, matches: '(?i)director', points: 20}
  grades: {A: 40, B: 25, C: 10}
  engagement:
    email_click: 5
  decay_half_life_days: 30
buying_stages:
  - name: evaluation
    when: {engagement_at_least: 40}
  - name: research
routing:
  mql:
    when: {score_at_least: 100}
    owners: [ana@acme.example]
    sla_hours: 48
"""

CAMPAIGN = """\
name: demo
sender:
  from_email: marketing@acme.example
  from_name: Acme
  postal_address: 1 Main Street, Springfield
tracks:
  - name: education
    stage: research
    cadence_days: 7
    send_window: {cron: '0 9 * * 1-5'}
    steps:
      - id: intro
        subject: Hello
        template: demo/intro.html.j2
      - id: guide
        subject: Guide
        template: demo/guide.html.j2
  - name: product
    stage: evaluation
    cadence_days: 4
    steps:
      - id: case-study
        subject: Case
        template: demo/case.html.j2
"""


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def lines_of(text: str, needle: str) -> list[int]:
    """1-based numbers of the lines containing `needle`."""
    return [i for i, line in enumerate(text.splitlines(), 1) if needle in line]


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line containing `needle`."""
    found = lines_of(text, needle)
    assert len(found) == 1, f"{needle!r} found on lines {found}"
    return found[0]


def problems_of(directory) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    return info.value.problems


def spec_examples() -> tuple[str, str]:
    """The format's reference examples are the shipped lifecycle and inbound-saas files
    (docs/campaign-format.md quotes them; tests/unit/test_docs.py checks the quotes)."""
    return ((CAMPAIGNS_DIR / "lifecycle.yaml").read_text(encoding="utf-8"),
            (CAMPAIGNS_DIR / "inbound-saas.yaml").read_text(encoding="utf-8"))


# -- valid configs ---------------------------------------------------------------------------
def test_spec_examples_validate_as_written(write_campaigns):
    lifecycle, campaign = spec_examples()
    directory = write_campaigns({"inbound-saas.yaml": campaign}, lifecycle=lifecycle)
    config = load_config(directory)
    assert [c.name for c in config.campaigns] == ["inbound-saas"]
    assert config.lifecycle.stage_names == ["evaluation", "research"]
    assert config.lifecycle.routing.sales_rejected["bad_data"].disqualify is True
    assert config.lifecycle.scoring.engagement["page_view"].max_per_day == 5
    # ... and as `nurture validate` checks them: every template renders for a sample lead
    loaded, problems = validate(directory, TEMPLATES_DIR)
    assert problems == []
    assert loaded is not None


def test_real_campaigns_load_and_validate():
    config = load_config(CAMPAIGNS_DIR)
    # highest priority first
    assert [c.name for c in config.campaigns] == ["webinar-followup", "inbound-saas"]
    assert config.campaign("inbound-saas").track_for("recycled").name == "stay-in-touch"
    loaded, problems = validate(CAMPAIGNS_DIR, TEMPLATES_DIR)
    assert [str(p) for p in problems] == []
    assert loaded is not None


def test_minimal_test_config_is_valid(write_campaigns):
    config = load_config(write_campaigns({"demo.yaml": CAMPAIGN}, lifecycle=LIFECYCLE))
    assert config.campaign("demo").track_for("evaluation").name == "product"


# -- one problem each, with the exact file:line: key.path: prefix ----------------------------
def test_unknown_key(write_campaigns):
    text = edit(CAMPAIGN, "        subject: Guide\n",
                "        subject: Guide\n        colour: red\n")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p).startswith(
        f"campaigns/demo.yaml:{line_of(text, 'colour')}: tracks[0].steps[1].colour: ")
    assert "unknown key" in p.message


def test_unknown_key_in_lifecycle(write_campaigns):
    text = edit(LIFECYCLE, "    sla_hours: 48\n", "    sla_hours: 48\n    sla_minutes: 5\n")
    [p] = problems_of(write_campaigns({"demo.yaml": CAMPAIGN}, lifecycle=text))
    assert str(p) == (f"campaigns/lifecycle.yaml:{line_of(text, 'sla_minutes')}: "
                      "routing.mql.sla_minutes: unknown key")


def test_wrong_type(write_campaigns):
    text = edit(CAMPAIGN, "cadence_days: 7", "cadence_days: weekly")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p).startswith(
        f"campaigns/demo.yaml:{line_of(text, 'weekly')}: tracks[0].cadence_days: ")
    assert "integer" in p.message


def test_bad_regex(write_campaigns):
    text = edit(LIFECYCLE, "'(?i)director'", "'(?i)(director'")
    [p] = problems_of(write_campaigns({"demo.yaml": CAMPAIGN}, lifecycle=text))
    assert str(p).startswith(
        f"campaigns/lifecycle.yaml:{line_of(text, 'director')}: scoring.fit[0].matches: ")
    assert "regular expression" in p.message


def test_bad_regex_in_nested_condition(write_campaigns):
    text = edit(CAMPAIGN, "        template: demo/guide.html.j2\n",
                "        template: demo/guide.html.j2\n"
                "        when:\n"
                "          any:\n"
                "            - {grade_in: [A]}\n"
                "            - {field: title, matches: '[unclosed'}\n")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p).startswith(f"campaigns/demo.yaml:{line_of(text, 'unclosed')}: "
                             "tracks[0].steps[1].when.any[1].matches: ")


def test_undefined_buying_stage_in_track(write_campaigns):
    text = edit(CAMPAIGN, "stage: evaluation", "stage: evalution")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p).startswith(
        f"campaigns/demo.yaml:{line_of(text, 'evalution')}: tracks[1].stage: ")
    assert "evalution" in p.message and "evaluation, research" in p.message


def test_recycled_is_a_valid_track_stage(write_campaigns):
    text = edit(CAMPAIGN, "stage: evaluation", "stage: recycled")
    config = load_config(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert config.campaign("demo").track_for("recycled").name == "product"


def test_duplicate_step_ids(write_campaigns):
    text = edit(CAMPAIGN, "id: case-study", "id: intro")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p).startswith(
        f"campaigns/demo.yaml:{lines_of(text, 'id: intro')[1]}: tracks[1].steps[0].id: ")
    assert "duplicate step id 'intro'" in p.message
    assert "tracks[0].steps[0].id" in p.message  # where it was first used


def test_default_buying_stage_not_last(write_campaigns):
    text = edit(LIFECYCLE,
                "  - name: evaluation\n    when: {engagement_at_least: 40}\n"
                "  - name: research\n",
                "  - name: research\n"
                "  - name: evaluation\n    when: {engagement_at_least: 40}\n")
    problems = problems_of(write_campaigns({"demo.yaml": CAMPAIGN}, lifecycle=text))
    first = problems[0]
    assert str(first).startswith(
        f"campaigns/lifecycle.yaml:{line_of(text, 'name: research')}: buying_stages[0].name: ")
    assert "default" in first.message and "last" in first.message
    # the stage now last has a `when`, which is reported too (its own line)
    assert [str(p).split(": ")[0:2] for p in problems[1:]] == [
        [f"campaigns/lifecycle.yaml:{line_of(text, 'name: evaluation')}", "buying_stages[1]"]]


def test_invalid_cron(write_campaigns):
    text = edit(CAMPAIGN, "'0 9 * * 1-5'", "'0 25 * * 1-5'")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p).startswith(
        f"campaigns/demo.yaml:{line_of(text, '0 25')}: tracks[0].send_window.cron: ")
    assert "cron" in p.message


def test_bad_yaml_syntax(write_campaigns):
    text = edit(CAMPAIGN, "  from_name: Acme\n", " from_name: Acme\n")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p).startswith(f"campaigns/demo.yaml:{line_of(text, 'from_name')}: (file): ")
    assert "YAML" in p.message


def test_bad_yaml_mapping_value(write_campaigns):
    text = edit(CAMPAIGN, "subject: Hello", "subject: Hello: world")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p).startswith(f"campaigns/demo.yaml:{line_of(text, 'Hello: world')}: (file): ")


def test_duplicate_yaml_key(write_campaigns):
    text = edit(CAMPAIGN, "    cadence_days: 4\n", "    cadence_days: 4\n    cadence_days: 5\n")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p).startswith(f"campaigns/demo.yaml:{line_of(text, 'cadence_days: 5')}: ")
    assert "duplicate key" in p.message


def test_missing_lifecycle(write_campaigns):
    [p] = problems_of(write_campaigns({"demo.yaml": CAMPAIGN}))
    assert str(p).startswith("campaigns/lifecycle.yaml:1: (file): ")
    assert "missing" in p.message


def test_missing_required_key_points_at_parent(write_campaigns):
    text = edit(CAMPAIGN, "  postal_address: 1 Main Street, Springfield\n", "")
    [p] = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert str(p) == (f"campaigns/demo.yaml:{line_of(text, 'sender:')}: "
                      "sender.postal_address: required key is missing")


# -- every problem at once -------------------------------------------------------------------
def test_three_errors_in_one_file_are_all_reported(write_campaigns):
    text = edit(CAMPAIGN, "cadence_days: 7", "cadence_days: weekly")
    text = edit(text, "'0 9 * * 1-5'", "'0 9 * * 1-8'")
    text = edit(text, "        subject: Case\n", "        subject: Case\n        colour: red\n")
    problems = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert len(problems) == 3
    prefixes = sorted(str(p).split(": ")[0] + ": " + p.key for p in problems)
    assert prefixes == sorted([
        f"campaigns/demo.yaml:{line_of(text, 'weekly')}: tracks[0].cadence_days",
        f"campaigns/demo.yaml:{line_of(text, '1-8')}: tracks[0].send_window.cron",
        f"campaigns/demo.yaml:{line_of(text, 'colour')}: tracks[1].steps[0].colour",
    ])


def test_three_cross_reference_errors_in_one_file_are_all_reported(write_campaigns):
    text = edit(CAMPAIGN, "stage: evaluation", "stage: evalution")
    text = edit(text, "id: guide", "id: intro")
    text = edit(text, "  - name: product", "  - name: education")
    problems = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert sorted((p.line, p.key) for p in problems) == [
        (lines_of(text, "id: intro")[1], "tracks[0].steps[1].id"),
        (lines_of(text, "name: education")[1], "tracks[1].name"),
        (line_of(text, "evalution"), "tracks[1].stage"),
    ]
    assert all(p.path == "campaigns/demo.yaml" for p in problems)


def test_problems_in_several_files_are_reported_together(write_campaigns):
    lifecycle = edit(LIFECYCLE, "'(?i)director'", "'(?i)(director'")
    campaign = edit(CAMPAIGN, "cadence_days: 4", "cadence_days: 0")
    directory = write_campaigns({"demo.yaml": campaign}, lifecycle=lifecycle)
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    report = info.value.report().splitlines()
    assert len(report) == 2
    assert report[0].startswith(
        f"campaigns/lifecycle.yaml:{line_of(lifecycle, 'director')}: scoring.fit[0].matches: ")
    assert report[1].startswith(
        f"campaigns/demo.yaml:{line_of(campaign, 'cadence_days: 0')}: tracks[1].cadence_days: ")
    assert "(and 1 more)" in str(info.value)


def test_schema_and_cross_reference_errors_are_reported_at_once(write_campaigns):
    text = edit(CAMPAIGN, "cadence_days: 7", "cadence_days: weekly")
    text = edit(text, "stage: evaluation", "stage: evalution")
    text = edit(text, "id: case-study", "id: intro")
    problems = problems_of(write_campaigns({"demo.yaml": text}, lifecycle=LIFECYCLE))
    assert sorted(p.key for p in problems) == [
        "tracks[0].cadence_days", "tracks[1].stage", "tracks[1].steps[0].id"]
