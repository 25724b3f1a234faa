"""`nurture validate` catches configs that validate but silently never work: misspelt
activity types and lead fields, unreachable steps, shadowed campaigns, emails that fail for
some personas — each as `file:line: key: message`, together with schema errors, and as
GitHub annotations or JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nurture.entrypoints.cli.main import main
from nurture.services.validation import validate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the shipped campaigns and templates under tmp_path (the working directory,
    so problems read `campaigns/<file>:<line>`); `edit(file, old, new)` changes one line and
    returns its 1-based line number."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    shutil.copytree(REPO / "templates", tmp_path / "templates")

    def edit(name: str, old: str, new: str) -> int:
        path = tmp_path / name
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} must occur once in {name}"
        path.write_text(text.replace(old, new), encoding="utf-8")
        return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if new in line
                    ) if "\n" not in new else 0

    return edit


def problems() -> list[str]:
    config, found = validate(Path("campaigns"), Path("templates"))
    assert (config is None) == bool(found)
    return [str(p) for p in found]


def test_shipped_campaigns_have_no_lint_problems(real):
    assert problems() == []


def test_misspelt_activity_in_the_mql_rule(real):
    line = real("campaigns/lifecycle.yaml", "{activity: demo_request, within_days: 7}",
                "{activity: demo_requets, within_days: 7}")
    assert problems() == [
        f"campaigns/lifecycle.yaml:{line}: routing.mql.when.any[1].activity: unknown activity "
        "type 'demo_requets' (did you mean 'demo_request'?): no scoring.engagement entry or "
        "activity_types declaration in lifecycle.yaml names it, so this rule would never match"]


def test_declared_activity_type_is_accepted(real):
    real("campaigns/lifecycle.yaml", "{activity: demo_request, within_days: 7}",
         "{activity: trial_extended, within_days: 7}")
    assert len(problems()) == 1
    real("campaigns/lifecycle.yaml", "limits:", "activity_types: [trial_extended]\nlimits:")
    assert problems() == []


def test_misspelt_field_in_fit_rule_and_audience(real):
    fit = real("campaigns/lifecycle.yaml", "{field: company_size, at_least: 200, points: 15}",
               "{field: compnay_size, at_least: 200, points: 15}")
    aud = real("campaigns/webinar-followup.yaml", "when: {field: source, equals: webinar}",
               "when: {field: sorce, equals: webinar}")
    found = problems()
    assert found[0].startswith(f"campaigns/lifecycle.yaml:{fit}: scoring.fit[1].field: unknown "
                               "lead field 'compnay_size' (did you mean 'company_size'?)")
    assert found[1].startswith(f"campaigns/webinar-followup.yaml:{aud}: audience.when.field: "
                               "unknown lead field 'sorce' (did you mean 'source'?)")
    assert len(found) == 2


def test_custom_fields_are_declared_in_lifecycle(real):
    real("campaigns/webinar-followup.yaml", "when: {field: source, equals: webinar}",
         "when: {all: [{field: source, equals: webinar}, {field: plan, exists: true}]}")
    assert "unknown lead field 'plan'" in problems()[0]
    real("campaigns/lifecycle.yaml", "limits:", "custom_fields: [plan]\nlimits:")
    assert problems() == []


def test_unknown_lead_field_in_a_subject(real):
    line = real("campaigns/inbound-saas.yaml", "subject: Lead scoring in five steps",
                "subject: Lead scoring for {{ lead.compnay }}")
    found = problems()
    assert (f"campaigns/inbound-saas.yaml:{line}: tracks[0].steps[2].subject: uses "
            "lead.compnay (did you mean 'company'?), which is neither a built-in lead field "
            "nor declared under custom_fields in lifecycle.yaml") in found


def test_step_whose_when_contradicts_the_audience_is_unreachable(real):
    line = real("campaigns/webinar-followup.yaml", "when: {grade_in: [A, B]}          # best",
                "when: {field: source, equals: website}  # best")
    assert problems() == [
        f"campaigns/webinar-followup.yaml:{line}: tracks[1].steps[2].when: no lead can ever "
        "reach step 'pricing-conversation': its `when` can never hold for a lead in this "
        "campaign's audience and track (given the audience, the buying stage and the fit "
        "scores scoring can produce)"]


def test_step_for_a_grade_scoring_cannot_produce_is_unreachable(real):
    # the fit rules add up to at most 45 points: with A at 50, no lead is ever grade A
    real("campaigns/lifecycle.yaml", "grades: {A: 40, B: 25, C: 10}",
         "grades: {A: 50, B: 25, C: 10}")
    line = real("campaigns/webinar-followup.yaml", "when: {grade_in: [A, B]}",
                "when: {grade_in: [A]}")
    found = problems()
    assert len(found) == 1 and found[0].startswith(
        f"campaigns/webinar-followup.yaml:{line}: tracks[1].steps[2].when: no lead can ever "
        "reach step 'pricing-conversation'")


def test_recycled_track_outside_the_audience_is_unreachable(real):
    real("campaigns/webinar-followup.yaml", "lifecycle_stages: [new, nurturing, recycled]",
         "lifecycle_stages: [new, nurturing]")
    text = Path("campaigns/webinar-followup.yaml").read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if "stage: recycled" in t)
    assert problems() == [
        f"campaigns/webinar-followup.yaml:{line}: tracks[2].stage: no lead can ever reach "
        "track 'stay-in-touch': it serves recycled leads, but the audience's lifecycle_stages "
        "leave out `recycled`"]


def test_campaign_wholly_shadowed_by_a_higher_priority_one(real):
    real("campaigns/webinar-followup.yaml", "when: {field: source, equals: webinar}",
         "when: {field: source, in: [website, webinar, content_syndication, partner]}")
    text = Path("campaigns/inbound-saas.yaml").read_text().splitlines()
    line = text.index("audience:") + 1
    found = problems()
    assert found == [
        f"campaigns/inbound-saas.yaml:{line}: audience: campaign 'inbound-saas' can never be "
        "chosen: every lead in its audience (new, nurturing, recycled) also matches "
        "higher-priority campaign 'webinar-followup' (priority 20, "
        "campaigns/webinar-followup.yaml:5), and a lead is in one campaign at a time"]


def test_partial_overlap_is_not_shadowing(real):
    # webinar leads go to the higher-priority campaign, website leads still reach inbound
    assert problems() == []


def test_template_failing_for_one_persona_only(real):
    line = real("campaigns/webinar-followup.yaml",
                "subject: \"{{ lead.first_name or 'Hi' }}, your webinar recording and slides\"",
                "subject: \"{{ lead.first_name.upper() }}, your webinar recording and slides\"")
    found = problems()
    assert len(found) == 1
    assert found[0].startswith(
        f"campaigns/webinar-followup.yaml:{line}: tracks[0].steps[0].subject: renders for the "
        "sample lead but not for persona 'no-first-name'")
    assert "'None' has no attribute 'upper'" in found[0]


def test_unescaped_lead_data_is_caught_by_the_markup_persona(real):
    real("templates/inbound-saas/case-study.html.j2", "{% block body %}",
         "{% block body %}<p>{{ lead.last_name|safe }}</p>")
    found = problems()
    assert len(found) == 1 and "persona 'markup-in-fields'" in found[0]
    assert "inserted unescaped" in found[0]


def test_persona_renders_are_reported_with_schema_errors_in_one_run(real):
    schema = real("campaigns/lifecycle.yaml", "sla_hours: 48", "sla_hours: two days")
    render = real("campaigns/webinar-followup.yaml",
                  "subject: \"{{ lead.first_name or 'Hi' }}, your webinar recording and slides\"",
                  "subject: \"{{ lead.first_name.upper() }}, your webinar recording and slides\"")
    found = problems()
    assert any(p.startswith(f"campaigns/lifecycle.yaml:{schema}: routing.mql.sla_hours:")
               for p in found)
    assert any(p.startswith(f"campaigns/webinar-followup.yaml:{render}: tracks[0].steps[0]."
                            "subject: renders for the sample lead but not for persona")
               for p in found)


def test_format_github_and_json(real, capsys):
    line = real("campaigns/lifecycle.yaml", "{activity: demo_request, within_days: 7}",
                "{activity: demo_requets, within_days: 7}")
    assert main(["validate", "campaigns", "--templates", "templates", "--format", "github"]
                ) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"::error file=campaigns/lifecycle.yaml,line={line},title=nurture validate%3A"
                   " routing.mql.when.any[1].activity::unknown activity type 'demo_requets' "
                   "(did you mean 'demo_request'?): no scoring.engagement entry or "
                   "activity_types declaration in lifecycle.yaml names it, so this rule would "
                   "never match"]
    assert main(["validate", "campaigns", "--templates", "templates", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["count"] == 1
    assert doc["problems"][0] | {"message": ""} == {
        "file": "campaigns/lifecycle.yaml", "line": line,
        "key": "routing.mql.when.any[1].activity", "message": ""}


def test_format_json_when_valid(real, capsys):
    assert main(["validate", "campaigns", "--templates", "templates", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "count": 0, "problems": []}
