"""The condition language (campaign-format.md, "Conditions"), compiled and evaluated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from nurture.core.conditions import Compiled, Facts, compile_condition
from nurture.core.config import Condition
from nurture.core.domain import ActivityFact

AS_OF = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POINTS = {"email_open": 0.0, "email_click": 5.0, "page_view": 1.0, "pricing_page_view": 15.0,
          "demo_request": 60.0, "unsubscribe": -50.0}


def cond(spec: dict) -> Compiled:
    return compile_condition(Condition.model_validate(spec))


def activity(kind: str, days_ago: float) -> ActivityFact:
    return ActivityFact(kind, AS_OF - days_ago * DAY, POINTS.get(kind, 0.0))


def facts(fields: dict | None = None, *, fit: float = 0, engagement: float = 0,
          grade: str = "D", activities: tuple[ActivityFact, ...] = (),
          stage_entered_days_ago: float = 365) -> Facts:
    return Facts(dict(fields or {}), fit, engagement, grade, list(activities), AS_OF,
                 AS_OF - stage_entered_days_ago * DAY)


# -- field tests -----------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "value", "expected"), [
    ({"equals": "software"}, "software", True),
    ({"equals": "software"}, "Software", True),  # text compares case-insensitively
    ({"equals": "software"}, "fintech", False),
    ({"equals": 200}, 200, True),
    ({"in": ["software", "fintech"]}, "fintech", True),
    ({"in": ["software", "fintech"]}, "retail", False),
    ({"matches": r"(?i)\b(vp|director)\b"}, "Director of Sales", True),
    ({"matches": r"(?i)\b(vp|director)\b"}, "Directorate assistant", False),
    ({"matches": r"@(gmail|yahoo)\."}, "x@gmail.com", True),  # search, not fullmatch
    ({"at_least": 200}, 200, True),
    ({"at_least": 200}, 199, False),
    ({"at_least": 200}, "250", True),  # CSV custom attributes arrive as text
    ({"at_least": 200}, "lots", False),
    ({"at_most": 50}, 50, True),
    ({"at_most": 50}, 51, False),
    ({"at_least": 10, "at_most": 20}, 15, True),
    ({"at_least": 10, "at_most": 20}, 25, False),
    ({"exists": True}, "x", True),
    ({"exists": False}, "x", False),
])
def test_field_tests(spec, value, expected):
    assert cond({"field": "f", **spec})(facts({"f": value})) is expected


@pytest.mark.parametrize("spec", [
    {"equals": "x"}, {"in": ["x"]}, {"matches": ".*"}, {"at_least": 0}, {"at_most": 0},
    {"exists": True},
])
@pytest.mark.parametrize("fields", [{}, {"f": None}, {"f": ""}], ids=["absent", "none", "empty"])
def test_missing_field_fails_every_test(spec, fields):
    assert cond({"field": "f", **spec})(facts(fields)) is False


@pytest.mark.parametrize("fields", [{}, {"f": None}, {"f": ""}], ids=["absent", "none", "empty"])
def test_missing_field_passes_exists_false(fields):
    assert cond({"field": "f", "exists": False})(facts(fields)) is True


def test_missing_field_under_not_holds():
    assert cond({"not": {"field": "f", "equals": "x"}})(facts({})) is True


# -- scores and grade -----------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "fit", "engagement", "expected"), [
    ({"score_at_least": 100}, 60, 40, True),
    ({"score_at_least": 100}, 60, 39.9, False),
    ({"fit_at_least": 25}, 25, 0, True),
    ({"fit_at_least": 25}, 24, 100, False),
    ({"engagement_at_least": 40}, 0, 40, True),
    ({"engagement_at_least": 40}, 100, 39, False),
    ({"engagement_below": 10}, 0, 9.99, True),
    ({"engagement_below": 10}, 0, 10, False),
])
def test_score_tests(spec, fit, engagement, expected):
    assert cond(spec)(facts(fit=fit, engagement=engagement)) is expected


@pytest.mark.parametrize(("grade", "expected"), [("A", True), ("B", True), ("C", False),
                                                 ("D", False)])
def test_grade_in(grade, expected):
    assert cond({"grade_in": ["A", "B"]})(facts(grade=grade)) is expected


def test_several_keys_in_one_mapping_must_all_hold():
    c = cond({"score_at_least": 100, "grade_in": ["A", "B"]})
    assert c(facts(fit=50, engagement=50, grade="A")) is True
    assert c(facts(fit=50, engagement=50, grade="C")) is False
    assert c(facts(fit=50, engagement=10, grade="A")) is False


# -- activities ------------------------------------------------------------------------------
def test_activity_default_at_least_one():
    c = cond({"activity": "demo_request"})
    assert c(facts(activities=(activity("demo_request", 400),))) is True
    assert c(facts(activities=(activity("page_view", 1),))) is False
    assert c(facts()) is False


def test_activity_within_days():
    c = cond({"activity": "demo_request", "within_days": 7})
    assert c(facts(activities=(activity("demo_request", 6.9),))) is True
    assert c(facts(activities=(activity("demo_request", 7),))) is True  # exactly D days ago
    assert c(facts(activities=(activity("demo_request", 7.01),))) is False


def test_activity_at_least_counts():
    c = cond({"activity": "page_view", "within_days": 3, "at_least": 3})
    two_recent = (activity("page_view", 1), activity("page_view", 2), activity("page_view", 5))
    three_recent = two_recent + (activity("page_view", 0.5),)
    assert c(facts(activities=two_recent)) is False
    assert c(facts(activities=three_recent)) is True
    # other types never count toward the total
    assert c(facts(activities=two_recent + (activity("email_click", 0.5),))) is False


# -- no_engagement_days ----------------------------------------------------------------------
@pytest.mark.parametrize(("activities", "entered_days_ago", "expected"), [
    ((), 61, True),                                    # never engaged, stage entered long ago
    ((), 59, False),                                   # ... but not 60 days ago yet
    ((activity("email_click", 61),), 365, True),       # last engagement 61 days ago
    ((activity("email_click", 30),), 365, False),      # engaged 30 days ago
    ((activity("email_click", 90),), 30, False),       # later of the two: stage entered 30d
    ((activity("email_click", 30), activity("page_view", 90)), 365, False),
    # opens (0 points) and unsubscribes (negative) are not engagement
    ((activity("email_click", 70), activity("email_open", 1), activity("unsubscribe", 2)),
     365, True),
])
def test_no_engagement_days(activities, entered_days_ago, expected):
    c = cond({"no_engagement_days": 60})
    assert c(facts(activities=activities, stage_entered_days_ago=entered_days_ago)) is expected


# -- combinators -----------------------------------------------------------------------------
def test_all_any_not():
    a_grade = {"grade_in": ["A"]}
    engaged = {"engagement_at_least": 10}
    assert cond({"all": [a_grade, engaged]})(facts(grade="A", engagement=10)) is True
    assert cond({"all": [a_grade, engaged]})(facts(grade="A", engagement=9)) is False
    assert cond({"any": [a_grade, engaged]})(facts(grade="B", engagement=10)) is True
    assert cond({"any": [a_grade, engaged]})(facts(grade="B", engagement=9)) is False
    assert cond({"not": a_grade})(facts(grade="B")) is True
    assert cond({"not": a_grade})(facts(grade="A")) is False
    nested = cond({"all": [{"any": [a_grade, engaged]}, {"not": {"field": "x", "exists": True}}]})
    assert nested(facts(grade="A")) is True
    assert nested(facts({"x": 1}, grade="A")) is False


def test_empty_condition_is_rejected():
    with pytest.raises(ValidationError, match="empty condition"):
        Condition.model_validate({})


@pytest.mark.parametrize("spec", [
    {"equals": "x"},                       # a field test needs a field
    {"field": "f"},                        # a field needs a test
    {"within_days": 3, "grade_in": ["A"]},  # within_days needs an activity
    {"any": []},
])
def test_incoherent_conditions_are_rejected(spec):
    with pytest.raises(ValidationError):
        Condition.model_validate(spec)


def test_none_condition_always_holds():
    assert compile_condition(None)(facts()) is True


# -- explain ---------------------------------------------------------------------------------
MQL_RULE = {"any": [{"score_at_least": 100, "grade_in": ["A", "B"]},
                    {"activity": "demo_request", "within_days": 7}]}


def test_explain_names_the_any_branch_that_fired():
    c = cond(MQL_RULE)
    by_demo = facts(fit=0, engagement=60, grade="D", activities=(activity("demo_request", 2),))
    assert c(by_demo)
    path, words = c.explain(by_demo, "routing.mql.when")
    assert path == "routing.mql.when.any[1]"
    assert "demo_request" in words and "7 days" in words

    by_score = facts(fit=45, engagement=60, grade="A")
    assert c.explain(by_score, "routing.mql.when")[0] == "routing.mql.when.any[0]"
    # both branches hold: the first one is named
    both = facts(fit=45, engagement=60, grade="A", activities=(activity("demo_request", 2),))
    assert c.explain(both, "routing.mql.when")[0] == "routing.mql.when.any[0]"


def test_explain_descends_into_nested_any():
    c = cond({"any": [{"grade_in": ["A"]},
                      {"any": [{"fit_at_least": 100}, {"activity": "demo_request"}]}]})
    f = facts(grade="C", activities=(activity("demo_request", 1),))
    assert c.explain(f, "when") == ("when.any[1].any[1]", "demo_request")


def test_explain_without_any_describes_the_whole_condition():
    c = cond({"no_engagement_days": 60})
    assert c.explain(facts(), "routing.recycle.when") == (
        "routing.recycle.when", "no engagement for 60 days")
