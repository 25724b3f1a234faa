"""Fit score and grade, engagement points, per-day caps and half-life decay
(campaign-format.md, lifecycle.yaml `scoring`), on the real lifecycle.yaml."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nurture.core.conditions import Facts
from nurture.core.config import Scoring
from nurture.core.domain import ActivityFact
from nurture.core.evaluation import evaluate, lead_facts
from nurture.core.scoring import ScoreTable

DAY = timedelta(days=1)


def fit_facts(fields: dict, as_of: datetime) -> Facts:
    return Facts(fields, 0.0, 0.0, "D", [], as_of, as_of)


def no_decay_table(engagement: dict) -> ScoreTable:
    """A table whose half-life is so long that decay never shows in two decimals."""
    return ScoreTable.compile(Scoring.model_validate(
        {"engagement": engagement, "decay_half_life_days": 1e9}))


# -- fit -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "expected"), [
    ({"title": "VP Marketing", "company_size": 500, "industry": "fintech",
      "email": "a@corp.example"}, 45),
    ({"title": "Head of Growth", "company_size": 200, "industry": "retail"}, 35),
    ({"title": "Director of Sales", "company_size": 199}, 20),
    ({"title": "Directorate assistant", "company_size": "250"}, 15),  # CSV text still counts
    ({"industry": "Healthcare"}, 10),  # in: compares case-insensitively
    ({"title": "Chief Revenue Officer", "email": "cro@gmail.com"}, 5),  # 20 - 15
    ({"email": "someone@hotmail.co.uk"}, -15),
    ({}, 0),
])
def test_fit_score_sums_matching_rules(rules, as_of, fields, expected):
    assert rules.scores.fit(fit_facts(fields, as_of)) == expected


def test_fit_breakdown_names_each_rule_that_held(rules, as_of):
    facts = fit_facts({"title": "VP Sales", "email": "x@yahoo.com"}, as_of)
    points = [p for _, p in rules.scores.fit_breakdown(facts)]
    assert points == [20, -15]


@pytest.mark.parametrize(("fit", "grade"), [
    (100, "A"), (40, "A"), (39.99, "B"), (25, "B"), (24.99, "C"), (10, "C"), (9.99, "D"),
    (0, "D"), (-15, "D"),
])
def test_grade_thresholds_are_minimum_fit_scores(rules, fit, grade):
    assert rules.scores.grade(fit) == grade


def test_grade_floors_come_from_config_not_a_fixed_table():
    table = ScoreTable.compile(Scoring.model_validate({"grades": {"A": 90, "B": 50, "C": 1}}))
    assert [table.grade(f) for f in (90, 89, 50, 49, 1, 0.5)] == ["A", "B", "B", "C", "C", "D"]


# -- engagement points -----------------------------------------------------------------------
def test_points_per_activity_type_without_decay(rules, act, as_of):
    acts = [act(kind, as_of) for kind in
            ("email_click", "content_download", "webinar_attended", "pricing_page_view",
             "demo_request")]
    by_type = rules.scores.engagement_by_type(acts, as_of)
    assert by_type == {"email_click": 5, "content_download": 10, "webinar_attended": 15,
                       "pricing_page_view": 15, "demo_request": 60}
    assert rules.scores.engagement(acts, as_of) == 105


def test_opens_and_unknown_types_score_nothing(rules, act, as_of):
    acts = [act("email_open", as_of), act("email_open", as_of), act("tweeted", as_of)]
    assert rules.scores.raw_points("tweeted") == 0
    assert rules.scores.engagement_by_type(acts, as_of) == {}
    assert rules.scores.engagement(acts, as_of) == 0


def test_unsubscribe_points_are_negative(rules, act, as_of):
    acts = [act("demo_request", as_of), act("unsubscribe", as_of)]
    assert rules.scores.engagement_by_type(acts, as_of)["unsubscribe"] == -50
    assert rules.scores.engagement(acts, as_of) == 10


def test_page_views_are_capped_per_day(rules, act, as_of):
    seven = [act("page_view", as_of - timedelta(minutes=m)) for m in range(7)]
    assert rules.scores.engagement(seven, as_of) == pytest.approx(5, abs=0.01)


def test_per_day_cap_restarts_on_the_next_day():
    table = no_decay_table({"page_view": {"points": 1, "max_per_day": 5}, "email_click": 5})
    as_of = datetime(2026, 11, 19, 12, 0, tzinfo=UTC)
    late = datetime(2026, 11, 17, 23, 0, tzinfo=UTC)
    early = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)
    acts = ([ActivityFact("page_view", late + timedelta(minutes=i), 1) for i in range(8)]
            + [ActivityFact("page_view", early + timedelta(minutes=i), 1) for i in range(3)]
            # uncapped types are not limited by the page_view cap
            + [ActivityFact("email_click", early, 5) for _ in range(7)])
    by_type = table.engagement_by_type(acts, as_of)
    assert by_type["page_view"] == pytest.approx(5 + 3)
    assert by_type["email_click"] == pytest.approx(35)


# -- decay -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("days_ago", "expected"), [
    (0, 10.0), (30, 5.0), (60, 2.5), (90, 1.25), (15, 7.07),
])
def test_engagement_halves_every_half_life(rules, act, as_of, days_ago, expected):
    acts = [act("content_download", as_of - days_ago * DAY)]
    assert rules.scores.half_life_days == 30
    assert rules.scores.engagement(acts, as_of) == expected


def test_decay_is_measured_to_as_of(rules, act, as_of):
    acts = [act("demo_request", as_of - 10 * DAY)]
    assert rules.scores.engagement(acts, as_of + 20 * DAY) == 30.0  # 30 days old by then
    assert rules.scores.engagement(acts, as_of - 10 * DAY) == 60.0


def test_negative_points_decay_too(rules, act, as_of):
    assert rules.scores.engagement([act("unsubscribe", as_of - 30 * DAY)], as_of) == -25.0


# -- what the cycle scores -------------------------------------------------------------------
def test_activities_after_as_of_are_ignored(rules, act, make_lead, as_of):
    lead = make_lead(activities=[act("content_download", as_of),
                                 act("demo_request", as_of + timedelta(seconds=1)),
                                 act("pricing_page_view", as_of + 3 * DAY)])
    facts = lead_facts(lead, rules, as_of)
    assert [a.type for a in facts.activities] == ["content_download"]
    assert facts.engagement == 10.0
    # ... and the same lead a week later sees all of them (decayed)
    later = lead_facts(lead, rules, as_of + 7 * DAY)
    assert later.engagement == pytest.approx(
        (10 + 60) * 0.5 ** (7 / 30) + 15 * 0.5 ** (4 / 30), abs=0.01)


def test_activities_before_engagement_since_do_not_count(rules, act, make_lead, as_of):
    lead = make_lead(engagement_since=as_of - 5 * DAY,
                     activities=[act("demo_request", as_of - 6 * DAY),
                                 act("email_click", as_of)])
    assert lead_facts(lead, rules, as_of).engagement == 5.0


def test_decision_reports_fit_engagement_score_and_grade(rules, act, make_lead, as_of):
    lead = make_lead(fields={"title": "Director of Ops", "company_size": 300},
                     activities=[act("content_download", as_of - 30 * DAY)])
    d = evaluate(lead, rules, as_of)
    assert (d.fit_score, d.engagement_score, d.score, d.grade) == (45, 5.0, 50.0, "A")
