"""Buying-stage segmentation, campaign choice and lifecycle routing (MQL, SLA expiry,
recycling, re-engagement, max_recycles) through the pure `evaluate` function."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from nurture.core.conditions import Facts, compile_condition
from nurture.core.config import Condition
from nurture.core.domain import (
    CUSTOMER,
    DISQUALIFIED,
    MQL,
    NEW,
    NURTURING,
    RECYCLED,
    SAL,
)
from nurture.core.evaluation import evaluate, lead_facts
from nurture.core.rules import Rules
from nurture.core.segmentation import buying_stage
from nurture.core.selection import choose_campaign

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
A_GRADE = {"title": "VP Marketing", "company_size": 500, "industry": "software"}  # fit 45


def facts_for(make_lead, rules, as_of, **kw) -> Facts:
    return lead_facts(make_lead(**kw), rules, as_of)


# -- buying stage ----------------------------------------------------------------------------
def test_first_matching_stage_wins_and_the_last_is_the_default(as_of):
    def when(spec):
        return compile_condition(Condition.model_validate(spec))

    stages = (("hot", when({"engagement_at_least": 50})),
              ("warm", when({"engagement_at_least": 10})),
              ("cold", compile_condition(None)))
    f = Facts({}, 0, 0, "D", [], as_of, as_of)
    seen = []
    for engagement in (80, 50, 49, 10, 9, 0):
        f.engagement = engagement
        seen.append(buying_stage(stages, f))
    assert seen == ["hot", "hot", "warm", "warm", "cold", "cold"]
    # a default that is not `always` still wins when nothing before it holds
    strict_last = stages[:2] + (("never", when({"engagement_at_least": 1000})),)
    assert buying_stage(strict_last, f) == "never"


@pytest.mark.parametrize(("activities", "expected"), [
    ([], "research"),
    ([("demo_request", 20)], "research"),                   # 60 decayed 20 days: 37.8
    ([("demo_request", 17)], "evaluation"),                 # 60 decayed 17 days: 40.5
    ([("content_download", 0)] * 4, "evaluation"),          # engagement 40
    ([("content_download", 0)] * 3 + [("page_view", 0)] * 9, "research"),  # 30 + capped 5
    ([("pricing_page_view", 14)], "evaluation"),            # within 14 days
    ([("pricing_page_view", 14.1)], "research"),
])
def test_buying_stage_from_the_real_lifecycle(rules, act, make_lead, as_of, activities, expected):
    lead = make_lead(activities=[act(k, as_of - d * DAY) for k, d in activities])
    assert evaluate(lead, rules, as_of).buying_stage == expected


def test_decayed_demo_request_straddles_the_evaluation_threshold(rules, act, as_of):
    # guards the parametrised cases above: 60 * 0.5**(days/30)
    assert rules.scores.engagement([act("demo_request", as_of - 20 * DAY)], as_of) == 37.8
    assert rules.scores.engagement([act("demo_request", as_of - 17 * DAY)], as_of) == 40.51


# -- campaign choice -------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "expected"), [
    ("website", "inbound-saas"),
    ("content_syndication", "inbound-saas"),
    ("webinar", "webinar-followup"),  # both audiences match: priority 20 beats 10
    ("Webinar", "webinar-followup"),
    ("partner", None),
])
def test_campaign_by_audience_and_priority(rules, make_lead, as_of, source, expected):
    assert [c.name for c in rules.campaigns] == ["webinar-followup", "inbound-saas"]
    facts = facts_for(make_lead, rules, as_of, fields={"source": source})
    chosen = choose_campaign(rules.campaigns, NURTURING, facts)
    assert (chosen.name if chosen else None) == expected


def test_campaign_audience_lifecycle_stages(config, make_lead, as_of):
    webinar = config.campaign("webinar-followup")
    new_only = webinar.model_copy(update={"audience": webinar.audience.model_copy(
        update={"lifecycle_stages": ["new"]})})
    rules = Rules.compile(dataclasses.replace(
        config, campaigns=(new_only, config.campaign("inbound-saas"))))
    facts = facts_for(make_lead, rules, as_of, fields={"source": "webinar"})
    assert choose_campaign(rules.campaigns, NEW, facts).name == "webinar-followup"
    # a nurturing/recycled webinar lead falls through to the next matching campaign
    assert choose_campaign(rules.campaigns, NURTURING, facts).name == "inbound-saas"
    assert choose_campaign(rules.campaigns, RECYCLED, facts).name == "inbound-saas"
    assert choose_campaign(rules.campaigns, MQL, facts) is None


def test_new_lead_is_enrolled_and_starts_nurturing(rules, make_lead, as_of):
    d = evaluate(make_lead(stage=NEW), rules, as_of)
    assert d.lifecycle_stage == NURTURING
    assert d.campaign == "inbound-saas"
    assert [(t.from_stage, t.to_stage, t.reason, t.rule) for t in d.transitions] == [
        (NEW, NURTURING, "enrolled in campaign inbound-saas", "inbound-saas.audience")]
    assert d.stage_entered_at == as_of
    assert d.touch is not None and d.touch.step == "buyers-guide"


def test_new_lead_matching_no_audience_stays_new(rules, make_lead, as_of):
    d = evaluate(make_lead(stage=NEW, fields={"source": "trade_show"}), rules, as_of)
    assert (d.lifecycle_stage, d.campaign, d.touch, d.skip_reason) == (
        NEW, None, None, "no_campaign")
    assert d.transitions == []


# -- MQL -------------------------------------------------------------------------------------
def test_mql_by_demo_request_names_the_rule_path(rules, act, make_lead, as_of):
    lead = make_lead(activities=[act("demo_request", as_of - 2 * DAY)])
    d = evaluate(lead, rules, as_of)
    assert d.mql and d.lifecycle_stage == MQL
    assert d.touch is None and d.skip_reason == "became_mql"
    (t,) = d.transitions
    assert (t.from_stage, t.to_stage, t.rule) == (NURTURING, MQL, "routing.mql.when.any[1]")
    assert t.reason.startswith("MQL rule routing.mql.when.any[1] held: demo_request within 7 days")
    assert d.handoff.rule == "routing.mql.when.any[1]"
    assert d.handoff.sla_due_at == as_of + 48 * HOUR
    assert d.stage_entered_at == as_of


def test_mql_by_score_and_grade(rules, act, make_lead, as_of):
    # fit 45 (A) + 60 demo 8 days old (outside any[1]'s 7 days): 60 * 0.5**(8/30) = 49.8
    lead = make_lead(fields=A_GRADE, activities=[act("demo_request", as_of - 8 * DAY),
                                                 act("content_download", as_of)])
    d = evaluate(lead, rules, as_of)
    assert d.score >= 100 and d.grade == "A"
    assert d.transitions[0].rule == "routing.mql.when.any[0]"
    assert "score ≥ 100 and grade in [A, B]" in d.transitions[0].reason
    assert d.handoff.sla_due_at == as_of + timedelta(hours=rules.sla_hours)


def test_high_score_but_grade_c_is_not_an_mql(rules, act, make_lead, as_of):
    # fit 10 (C) and a lot of engagement, no recent demo request
    lead = make_lead(activities=[act("webinar_attended", as_of)] * 7)
    d = evaluate(lead, rules, as_of)
    assert d.score == 115 and d.grade == "C"
    assert not d.mql and d.lifecycle_stage == NURTURING


@pytest.mark.parametrize("stage", [NEW, NURTURING, RECYCLED])
def test_mql_rule_applies_to_marketing_stages(rules, act, make_lead, as_of, stage):
    lead = make_lead(stage=stage, activities=[act("demo_request", as_of - HOUR)])
    d = evaluate(lead, rules, as_of)
    assert [(t.from_stage, t.to_stage) for t in d.transitions] == [(stage, MQL)]


@pytest.mark.parametrize(("stage", "reason"), [
    (DISQUALIFIED, "disqualified"), (SAL, "with_sales"), (CUSTOMER, "with_sales")])
def test_disqualified_and_sales_leads_are_left_alone(rules, act, make_lead, as_of, stage,
                                                      reason):
    lead = make_lead(stage=stage, activities=[act("demo_request", as_of - HOUR)],
                     stage_entered_at=as_of - 400 * DAY)
    d = evaluate(lead, rules, as_of)
    assert (d.lifecycle_stage, d.transitions, d.handoff, d.touch, d.skip_reason) == (
        stage, [], None, None, reason)


def test_mql_owners_keep_config_order_for_round_robin(rules):
    # The round-robin itself happens in the lead store when handoffs are written
    # (nurture.store.store.apply_decisions); the engine hands it the owners in config order.
    assert rules.mql_owners == ("ana@acme.example", "ben@acme.example")


# -- SLA expiry ------------------------------------------------------------------------------
def test_mql_within_sla_stays_with_sales(rules, make_lead, as_of):
    lead = make_lead(stage=MQL, sla_due_at=as_of + HOUR)
    d = evaluate(lead, rules, as_of)
    assert (d.lifecycle_stage, d.transitions, d.expire_handoff, d.skip_reason) == (
        MQL, [], False, "with_sales")


def test_mql_past_sla_is_recycled_without_wait(rules, act, make_lead, as_of):
    lead = make_lead(stage=MQL, sla_due_at=as_of, recycle_count=1,
                     activities=[act("content_download", as_of - DAY)])
    d = evaluate(lead, rules, as_of)
    assert d.expire_handoff is True
    (t,) = d.transitions
    assert (t.from_stage, t.to_stage, t.rule) == (MQL, RECYCLED, "routing.mql.sla_hours")
    assert t.reason.startswith("sla_expired")
    assert (d.recycle_count, d.recycle_until, d.engagement_since) == (2, as_of, as_of)
    assert d.engagement_score == 0 and d.score == d.fit_score  # engagement restarts
    # no wait: straight onto the campaign's recycled track
    assert (d.track, d.touch.step) == ("stay-in-touch", "quarterly-digest")


# -- going cold ------------------------------------------------------------------------------
def test_nurturing_lead_without_engagement_for_60_days_is_recycled(rules, act, make_lead,
                                                                   as_of):
    lead = make_lead(stage_entered_at=as_of - 200 * DAY,
                     activities=[act("email_click", as_of - 60 * DAY),
                                 act("email_open", as_of - DAY)])  # opens are not engagement
    d = evaluate(lead, rules, as_of)
    (t,) = d.transitions
    assert (t.from_stage, t.to_stage, t.rule) == (NURTURING, RECYCLED, "routing.recycle.when")
    assert t.reason == "went cold: no engagement for 60 days"
    assert (d.recycle_count, d.recycle_until, d.engagement_since) == (1, as_of, as_of)
    assert d.track == "stay-in-touch"


def test_recent_engagement_keeps_the_lead_nurturing(rules, act, make_lead, as_of):
    lead = make_lead(stage_entered_at=as_of - 200 * DAY,
                     activities=[act("email_click", as_of - 59 * DAY)])
    d = evaluate(lead, rules, as_of)
    assert d.transitions == [] and d.lifecycle_stage == NURTURING


def test_cold_clock_starts_when_the_lead_entered_its_stage(rules, make_lead, as_of):
    assert evaluate(make_lead(stage_entered_at=as_of - 59 * DAY), rules, as_of).transitions == []
    d = evaluate(make_lead(stage_entered_at=as_of - 60 * DAY), rules, as_of)
    assert d.lifecycle_stage == RECYCLED


def test_recycle_rule_applies_to_nurturing_leads_only(rules, make_lead, as_of):
    lead = make_lead(stage=RECYCLED, stage_entered_at=as_of - 300 * DAY,
                     engagement_since=as_of - 300 * DAY, recycle_count=1,
                     recycle_until=as_of - 270 * DAY)
    d = evaluate(lead, rules, as_of)
    assert d.transitions == [] and d.recycle_count == 1


@pytest.mark.parametrize(("count", "to", "skip"), [
    (0, RECYCLED, None), (2, RECYCLED, None), (3, DISQUALIFIED, "disqualified")])
def test_max_recycles_then_disqualified(rules, make_lead, as_of, count, to, skip):
    assert rules.max_recycles == 3
    lead = make_lead(stage_entered_at=as_of - 90 * DAY, recycle_count=count,
                     campaign="inbound-saas", track="education")
    d = evaluate(lead, rules, as_of)
    (t,) = d.transitions
    assert t.to_stage == to and d.lifecycle_stage == to
    assert d.skip_reason == skip
    if to == DISQUALIFIED:
        assert t.rule == "routing.max_recycles"
        assert "max_recycles 3" in t.reason
        assert (d.campaign, d.track, d.touch, d.recycle_count) == (None, None, None, 3)
    else:
        assert d.recycle_count == count + 1


def test_sla_expiry_after_max_recycles_disqualifies(rules, make_lead, as_of):
    d = evaluate(make_lead(stage=MQL, sla_due_at=as_of - HOUR, recycle_count=3), rules, as_of)
    assert [(t.from_stage, t.to_stage) for t in d.transitions] == [(MQL, DISQUALIFIED)]
    assert d.touch is None and d.skip_reason == "disqualified"


# -- recycled leads --------------------------------------------------------------------------
def recycled(make_lead, as_of, wait_days: float, **kw):
    recycled_at = as_of - 10 * DAY
    return make_lead(stage=RECYCLED, stage_entered_at=recycled_at, engagement_since=recycled_at,
                     recycle_count=1, recycle_until=recycled_at + wait_days * DAY,
                     campaign="inbound-saas", track="education", **kw)


def test_recycled_lead_waits_then_gets_the_recycled_track(rules, make_lead, as_of):
    waiting = evaluate(recycled(make_lead, as_of, wait_days=30), rules, as_of)
    assert (waiting.touch, waiting.skip_reason) == (None, "recycle_wait")
    assert waiting.lifecycle_stage == RECYCLED

    over = evaluate(recycled(make_lead, as_of, wait_days=10), rules, as_of)  # ends at as_of
    assert over.lifecycle_stage == RECYCLED and over.transitions == []
    assert (over.track, over.touch.track, over.touch.step) == (
        "stay-in-touch", "stay-in-touch", "quarterly-digest")


def test_recycled_lead_uses_buying_stage_track_when_campaign_has_none(config, make_lead, as_of):
    inbound = config.campaign("inbound-saas")
    no_recycled = inbound.model_copy(update={"tracks": [
        t for t in inbound.tracks if t.stage != RECYCLED]})
    rules = Rules.compile(dataclasses.replace(config, campaigns=(no_recycled,)))
    d = evaluate(recycled(make_lead, as_of, wait_days=0), rules, as_of)
    assert (d.track, d.touch.step) == ("education", "buyers-guide")


def test_engagement_after_recycling_returns_the_lead_to_nurturing(rules, act, make_lead, as_of):
    lead = recycled(make_lead, as_of, wait_days=90,
                    activities=[act("email_click", as_of - 2 * DAY)])
    d = evaluate(lead, rules, as_of)
    (t,) = d.transitions
    assert (t.from_stage, t.to_stage, t.rule) == (
        RECYCLED, NURTURING, "engagement_after_recycle")
    assert t.reason == "re-engaged: email_click on 2026-11-16 after recycling"
    assert (d.track, d.touch.step) == ("education", "buyers-guide")


def test_old_evidence_does_not_make_a_recycled_lead_an_mql(rules, act, make_lead, as_of):
    # the demo request that made it an MQL happened before it was recycled
    old = [act("demo_request", as_of - 11 * DAY), act("webinar_attended", as_of - 12 * DAY)]
    lead = recycled(make_lead, as_of, wait_days=30, fields=A_GRADE, activities=old)
    d = evaluate(lead, rules, as_of)
    assert (d.fit_score, d.engagement_score, d.score, d.mql) == (45, 0, 45, False)
    assert (d.lifecycle_stage, d.skip_reason) == (RECYCLED, "recycle_wait")
    # ... but new engagement does, even during the wait: here a fresh demo request for a
    # C-grade lead (only any[1] can fire), evaluated before re-engagement moves it
    lead = recycled(make_lead, as_of, wait_days=30,
                    activities=[*old, act("demo_request", as_of - DAY)])
    again = evaluate(lead, rules, as_of)
    assert again.mql and again.grade == "C"
    assert [(t.from_stage, t.to_stage, t.rule) for t in again.transitions] == [
        (RECYCLED, MQL, "routing.mql.when.any[1]")]


def test_recycling_resets_engagement_and_buying_stage(rules, act, make_lead, as_of):
    # evaluation-stage by an old-ish pricing view, then gone cold: back to research
    lead = make_lead(stage_entered_at=as_of - 200 * DAY,
                     activities=[act("pricing_page_view", as_of - 61 * DAY)] * 3)
    assert lead_facts(lead, rules, as_of).engagement > 0
    d = evaluate(lead, rules, as_of)
    assert d.lifecycle_stage == RECYCLED
    assert (d.engagement_score, d.buying_stage) == (0.0, "research")

