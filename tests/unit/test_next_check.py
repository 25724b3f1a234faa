"""When the cycle looks at a lead again (`nurture.core.next_check`): a lead sleeps until its
decision could change with time alone — never past it. The property test replays a lead
after its decision at random moments before its next check: nothing the cycle would decide
there may differ from what it decides at the next check."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nurture.core.conditions import Facts
from nurture.core.domain import MQL, NURTURING, SENT, LeadSnapshot, SkipReason, TouchFact
from nurture.core.evaluation import evaluate
from nurture.core.next_check import MAX_SLEEP, TimeTriggers, condition_change

DAY = timedelta(days=1)
KINDS = ["email_click", "page_view", "content_download", "webinar_attended", "demo_request",
         "pricing_page_view", "unsubscribe", "email_open"]
TITLES = ["VP Marketing", "Marketing Manager", "Intern", "Head of Growth", "Engineer"]


def test_the_shipped_config_yields_its_time_triggers(rules):
    t = rules.triggers
    assert 40 in t.engagement and 100 in t.score
    assert {7, 14} <= set(t.windows) and 60 in t.quiet


def test_decaying_engagement_wakes_the_lead_before_it_crosses_a_threshold(as_of):
    # 100 points now, half-life 30 days: below 40 after 30·log2(100/40) ≈ 39.7 days
    f = Facts({}, 0.0, 100.0, "D", [], as_of, as_of)
    when = condition_change(f, as_of, TimeTriggers(engagement=(40.0,)), 30, 300, as_of)
    assert timedelta(days=39) < when - as_of < timedelta(days=39.66)
    # already below the threshold: decay only moves it further away
    f.engagement = 30.0
    assert condition_change(f, as_of, TimeTriggers(engagement=(40.0,)), 30, 300, as_of) is None


def test_a_planned_touch_sleeps_until_a_day_before_its_cadence(make_lead, rules, as_of):
    d = evaluate(make_lead(), rules, as_of)
    assert d.touch is not None
    cadence = rules.cadence_days(d.campaign, d.track)
    assert d.next_check_at == min(d.touch.send_at + timedelta(days=cadence) - DAY,
                                  as_of + MAX_SLEEP)


def test_pending_and_paused_leads_are_looked_at_every_run(make_lead, rules, as_of):
    pending = make_lead(touches=[TouchFact("inbound-saas", "welcome", 0, "planned", None)])
    assert evaluate(pending, rules, as_of).skip_reason == SkipReason.PENDING
    assert evaluate(pending, rules, as_of).next_check_at is None
    paused = evaluate(make_lead(), rules, as_of, frozenset({"inbound-saas"}))
    assert paused.skip_reason == SkipReason.PAUSED and paused.next_check_at is None


def test_new_rules_change_the_fingerprint(config, rules):
    from nurture.core.rules import Rules

    assert Rules.compile(config).fingerprint == rules.fingerprint
    lc = config.lifecycle.model_copy(update={"routing": config.lifecycle.routing.model_copy(
        update={"max_recycles": config.lifecycle.routing.max_recycles + 1})})
    other = Rules.compile(dataclasses.replace(config, lifecycle=lc))
    assert other.fingerprint != rules.fingerprint


def _after(lead: LeadSnapshot, d) -> LeadSnapshot:
    """The lead as the store holds it once decision `d` is written and its touch sent."""
    touches = list(lead.touches)
    if d.touch is not None:
        touches.append(TouchFact(d.touch.campaign, d.touch.step, d.touch.round, SENT,
                                 d.touch.send_at))
    return dataclasses.replace(
        lead, lifecycle_stage=d.lifecycle_stage, stage_entered_at=d.stage_entered_at,
        engagement_since=d.engagement_since, recycle_count=d.recycle_count,
        recycle_until=d.recycle_until, campaign=d.campaign, track=d.track,
        track_rounds=dict(d.track_rounds), touches=touches)


def _seen(d) -> tuple:
    return (d.lifecycle_stage, [tr.to_stage for tr in d.transitions], d.buying_stage,
            d.campaign, d.track)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=st.sampled_from(TITLES), size=st.sampled_from([5, 50, 500, 5000]),
       acts=st.lists(st.tuples(st.sampled_from(KINDS), st.floats(0, 80)), max_size=12),
       sends=st.lists(st.tuples(st.sampled_from(["welcome", "buyers-guide"]),
                                st.floats(0.5, 40)), max_size=3),
       entered=st.floats(0, 120), probes=st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_nothing_changes_before_the_next_check(make_lead, act, rules, as_of, title, size, acts,
                                               sends, entered, probes):
    lead = make_lead(
        fields={"title": title, "company_size": size},
        stage_entered_at=as_of - timedelta(days=entered),
        activities=[act(k, as_of - timedelta(days=age)) for k, age in acts],
        touches=[TouchFact("inbound-saas", step, 0, SENT, as_of - timedelta(days=age))
                 for step, age in sends],
        campaign="inbound-saas" if sends else None)
    d = evaluate(lead, rules, as_of)
    if d.next_check_at is None or d.lifecycle_stage != NURTURING or d.handoff is not None:
        event("not asleep")
        return
    event(f"asleep: {d.skip_reason or 'touch planned'}")
    later = _after(lead, d)
    wake = evaluate(later, rules, d.next_check_at)
    before = evaluate(later, rules, as_of + timedelta(seconds=1))
    for p in probes:
        t = as_of + (d.next_check_at - as_of) * p
        if t >= d.next_check_at:
            continue
        seen = evaluate(later, rules, t)
        assert _seen(seen) == _seen(before), (t, d.next_check_at)
        assert seen.lifecycle_stage != MQL
        if seen.touch is not None:  # a touch due before the wake goes out at the same time
            assert wake.touch is not None
            assert (wake.touch.step, wake.touch.send_at) == (seen.touch.step,
                                                            seen.touch.send_at)


def test_a_sleeping_lead_wakes_when_decay_moves_it_to_another_buying_stage(
        make_lead, act, rules, as_of):
    # 60 points 14 days ago ≈ 43.3 now: evaluation stage (engagement ≥ 40) for ≈ 3.4 more days
    lead = make_lead(suppressed=True, activities=[act("demo_request", as_of - 14 * DAY)])
    d = evaluate(lead, rules, as_of)
    assert d.skip_reason == SkipReason.SUPPRESSED and d.buying_stage == "evaluation"
    assert timedelta(days=3) < d.next_check_at - as_of < timedelta(days=3.5)
    hour = timedelta(hours=1)
    assert evaluate(lead, rules, d.next_check_at - hour).buying_stage == "evaluation"
    assert evaluate(lead, rules, d.next_check_at + 2 * hour).buying_stage == "research"
