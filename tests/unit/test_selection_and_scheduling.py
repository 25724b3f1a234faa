"""Content selection (next step, track switches, step `when`, A/B variants, exhaustion) and
scheduling (cadence, weekly cap, send window in the lead's time zone)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from nurture.core.domain import CANCELLED, FAILED, IN_DOUBT, PLANNED, SENDING, TouchFact
from nurture.core.evaluation import evaluate, lead_facts
from nurture.core.rules import CompiledTrack, Rules
from nurture.core.scheduling import (
    cadence_elapsed,
    last_sent_in_campaign,
    next_opening,
    sent_this_week,
)
from nurture.core.selection import next_step, pick_variant, seen_steps

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
CAMPAIGN = "inbound-saas"
WINDOW = "0 9 * * 1-5"
NY = "America/New_York"
D_GRADE = {"industry": "retail"}  # fit 0


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def track(rules: Rules, name: str) -> CompiledTrack:
    return rules.campaign(CAMPAIGN).tracks_by_name[name]


def restart_rules(config) -> Rules:
    """The real config with inbound-saas tracks set to `on_exhausted: restart`."""
    inbound = config.campaign(CAMPAIGN)
    tracks = [t.model_copy(update={"on_exhausted": "restart"}) for t in inbound.tracks]
    return Rules.compile(dataclasses.replace(
        config, campaigns=(inbound.model_copy(update={"tracks": tracks}),)))


def pricing_view(act, as_of):
    """Makes a lead evaluation-stage (pricing page within 14 days)."""
    return act("pricing_page_view", as_of - DAY)


# -- next step -------------------------------------------------------------------------------
def test_next_step_is_the_first_one_never_sent(rules, make_lead, as_of):
    education = track(rules, "education")
    facts = lead_facts(make_lead(), rules, as_of)
    order = []
    seen: set[tuple[str, int]] = set()
    while True:
        step, round_ = next_step(education, seen, 0, facts)
        if step is None:
            break
        assert round_ == 0
        order.append(step.step.id)
        seen.add((step.step.id, 0))
    assert order == ["buyers-guide", "funnel-benchmark", "scoring-101"]


def test_seen_steps_counts_only_what_went_out_or_may_have(sent, as_of):
    """#8: a step is seen once it went out (sent) or may have (in doubt, sending) — a failed
    or cancelled step was never seen, so the lead still gets it."""
    touches = [sent(CAMPAIGN, "buyers-guide", as_of),
               sent(CAMPAIGN, "funnel-benchmark", as_of, status=FAILED),
               sent(CAMPAIGN, "scoring-101", as_of, round_=1, status=IN_DOUBT),
               sent(CAMPAIGN, "roi-calculator", as_of, status=CANCELLED),
               sent("webinar-followup", "case-study", as_of)]
    assert seen_steps(touches, CAMPAIGN) == {("buyers-guide", 0), ("scoring-101", 1)}


def test_a_step_that_failed_for_good_holds_the_lead_instead_of_being_skipped(
        rules, make_lead, sent, as_of):
    """#8: before, the lead silently got the next step and never the failed one."""
    lead = make_lead(touches=[sent(CAMPAIGN, "buyers-guide", as_of - 30 * DAY, status=FAILED)])
    d = evaluate(lead, rules, as_of)
    assert d.touch is None and d.skip_reason == "step_failed"


def test_a_cancelled_step_is_planned_again(rules, make_lead, sent, as_of):
    lead = make_lead(touches=[sent(CAMPAIGN, "buyers-guide", as_of - 30 * DAY,
                                   status=CANCELLED)])
    assert evaluate(lead, rules, as_of).touch.step == "buyers-guide"


def test_evaluate_never_repeats_a_step(rules, make_lead, sent, as_of):
    lead = make_lead(touches=[sent(CAMPAIGN, "buyers-guide", as_of - 8 * DAY)])
    d = evaluate(lead, rules, as_of)
    assert (d.track, d.touch.track, d.touch.step, d.touch.round) == (
        "education", "education", "funnel-benchmark", 0)


def test_stage_switch_picks_the_first_unseen_step_of_the_new_track(rules, act, make_lead, sent,
                                                                   as_of):
    research_history = [sent(CAMPAIGN, "buyers-guide", as_of - 20 * DAY),
                        sent(CAMPAIGN, "funnel-benchmark", as_of - 13 * DAY)]
    lead = make_lead(campaign=CAMPAIGN, track="education", touches=research_history,
                     activities=[pricing_view(act, as_of)])
    d = evaluate(lead, rules, as_of)
    assert d.buying_stage == "evaluation"
    assert (d.track, d.touch.step) == ("product", "case-study")

    # back in research later: education resumes where it left off, nothing repeats
    later = as_of + 20 * DAY
    back = make_lead(campaign=CAMPAIGN, track="product", activities=[pricing_view(act, as_of)],
                     touches=[*research_history, sent(CAMPAIGN, "case-study", as_of + HOUR)])
    d2 = evaluate(back, rules, later)
    assert d2.buying_stage == "research"
    assert (d2.track, d2.touch.step) == ("education", "scoring-101")


def test_step_when_skips_steps_for_leads_that_fail_it(rules, act, make_lead, sent, as_of):
    history = [sent(CAMPAIGN, "case-study", as_of - 5 * DAY)]
    c_grade = make_lead(activities=[pricing_view(act, as_of)], touches=history)
    d_grade = make_lead(fields=D_GRADE, activities=[pricing_view(act, as_of)], touches=history)
    dc, dd = evaluate(c_grade, rules, as_of), evaluate(d_grade, rules, as_of)
    assert (dc.grade, dc.touch.step) == ("C", "roi-calculator")
    assert (dd.grade, dd.touch.step) == ("D", "demo-invite")


def test_skipped_step_is_offered_once_the_lead_qualifies(rules, act, make_lead, sent, as_of):
    # a D lead got demo-invite after skipping roi-calculator; once it is grade C it gets it
    history = [sent(CAMPAIGN, "case-study", as_of - 10 * DAY),
               sent(CAMPAIGN, "demo-invite", as_of - 5 * DAY)]
    d_grade = make_lead(fields=D_GRADE, activities=[pricing_view(act, as_of)], touches=history)
    assert evaluate(d_grade, rules, as_of).skip_reason == "exhausted"
    c_grade = make_lead(activities=[pricing_view(act, as_of)], touches=history)
    assert evaluate(c_grade, rules, as_of).touch.step == "roi-calculator"


# -- A/B variants ----------------------------------------------------------------------------
def test_variant_is_deterministic_per_lead(rules):
    demo = track(rules, "product").steps[2]
    assert demo.step.id == "demo-invite"
    first = [pick_variant(demo, f"lead{i}@example.com", CAMPAIGN) for i in range(50)]
    again = [pick_variant(demo, f"lead{i}@example.com", CAMPAIGN) for i in range(50)]
    assert first == again
    assert set(first) == {"a", "b"}


def test_variants_split_roughly_evenly(rules):
    demo = track(rules, "product").steps[2]
    counts = Counter(pick_variant(demo, f"lead{i}@example.com", CAMPAIGN) for i in range(1000))
    assert set(counts) == {"a", "b"}
    assert 450 <= counts["a"] <= 550, counts


def test_three_way_split_and_no_variants(rules):
    demo = track(rules, "product").steps[2]
    three = dataclasses.replace(demo, step=demo.step.model_copy(update={"variants": [
        v.model_copy(update={"id": name}) for v, name in
        zip([*demo.step.variants, demo.step.variants[0]], "xyz", strict=True)]}))
    counts = Counter(pick_variant(three, f"u{i}@example.com", CAMPAIGN) for i in range(3000))
    assert set(counts) == {"x", "y", "z"}
    assert all(900 <= n <= 1100 for n in counts.values()), counts
    case_study = track(rules, "product").steps[0]
    assert pick_variant(case_study, "u1@example.com", CAMPAIGN) is None


def test_planned_touch_carries_the_variant(rules, act, make_lead, sent, as_of):
    history = [sent(CAMPAIGN, "case-study", as_of - 10 * DAY),
               sent(CAMPAIGN, "roi-calculator", as_of - 5 * DAY)]
    picked = set()
    for i in range(40):
        email = f"buyer{i}@example.com"
        lead = make_lead(fields={"email": email}, activities=[pricing_view(act, as_of)],
                         touches=history)
        touch = evaluate(lead, rules, as_of).touch
        assert touch.step == "demo-invite"
        assert touch.variant == pick_variant(track(rules, "product").steps[2], email, CAMPAIGN)
        picked.add(touch.variant)
    assert picked == {"a", "b"}


# -- exhaustion ------------------------------------------------------------------------------
ALL_EDUCATION = ("buyers-guide", "funnel-benchmark", "scoring-101")


def test_hold_when_every_step_was_sent(rules, make_lead, sent, as_of):
    touches = [sent(CAMPAIGN, s, as_of - (30 - i) * DAY) for i, s in enumerate(ALL_EDUCATION)]
    d = evaluate(make_lead(touches=touches), rules, as_of)
    assert (d.touch, d.skip_reason, d.track) == (None, "exhausted", "education")
    facts = lead_facts(make_lead(), rules, as_of)
    assert next_step(track(rules, "education"), {(s, 0) for s in ALL_EDUCATION}, 0,
                     facts)[0] is None


def test_restart_begins_a_new_round(config, make_lead, sent, as_of):
    rules = restart_rules(config)
    touches = [sent(CAMPAIGN, s, as_of - (30 - i) * DAY) for i, s in enumerate(ALL_EDUCATION)]
    d = evaluate(make_lead(touches=touches), rules, as_of)
    assert (d.touch.step, d.touch.round, d.track_rounds) == ("buyers-guide", 1, {"education": 1})

    # next cycle: round 1 continues without repeating round-1 steps
    touches.append(sent(CAMPAIGN, "buyers-guide", as_of + 2 * HOUR, round_=1))
    lead = make_lead(touches=touches, campaign=CAMPAIGN, track="education",
                     track_rounds={"education": 1})
    d2 = evaluate(lead, rules, as_of + 8 * DAY)
    assert (d2.touch.step, d2.touch.round) == ("funnel-benchmark", 1)


def test_restart_never_repeats_a_later_round_step(config, make_lead, sent, as_of):
    # track_rounds start over when a lead changes campaign (and comes back); the ledger
    # already holds round-1 buyers-guide, so repeating it would violate "never the same step
    # twice" (and the ledger's unique key would silently swallow the touch every cycle)
    rules = restart_rules(config)
    touches = [sent(CAMPAIGN, s, as_of - (40 - i) * DAY) for i, s in enumerate(ALL_EDUCATION)]
    touches.append(sent(CAMPAIGN, "buyers-guide", as_of - 10 * DAY, round_=1))
    lead = make_lead(touches=touches, campaign="webinar-followup", track="webinar-recap",
                     track_rounds={"webinar-recap": 2})
    d = evaluate(lead, rules, as_of)
    assert (d.campaign, d.touch.step, d.touch.round) == (CAMPAIGN, "funnel-benchmark", 1)
    assert d.track_rounds == {"education": 1}


def test_restart_with_a_step_the_lead_does_not_qualify_for(config, act, make_lead, sent, as_of):
    # a D lead never gets roi-calculator (grade A-C), so "every step was sent" never holds:
    # once it has had every step it qualifies for, a restart track must still begin again
    rules = restart_rules(config)
    touches = [sent(CAMPAIGN, "case-study", as_of - 20 * DAY),
               sent(CAMPAIGN, "demo-invite", as_of - 10 * DAY)]
    lead = make_lead(fields=D_GRADE, activities=[pricing_view(act, as_of)], touches=touches)
    d = evaluate(lead, rules, as_of)
    assert d.grade == "D"
    assert d.touch is not None, d.skip_reason
    assert (d.touch.step, d.touch.round) == ("case-study", 1)


# -- cadence ---------------------------------------------------------------------------------
def test_cadence_elapsed_boundaries():
    last = utc(2026, 11, 1, 14, 0)
    assert cadence_elapsed(None, 7, last) is True
    assert cadence_elapsed(last, 7, last + 7 * DAY) is True
    assert cadence_elapsed(last, 7, last + 7 * DAY - timedelta(seconds=1)) is False


def test_last_sent_ignores_other_campaigns_and_unsent_touches(sent, as_of):
    touches = [sent(CAMPAIGN, "a", as_of - 9 * DAY),
               sent(CAMPAIGN, "b", as_of - 3 * DAY),
               sent(CAMPAIGN, "c", as_of - DAY, status=FAILED),
               sent(CAMPAIGN, "d", as_of, status=PLANNED),
               sent("webinar-followup", "e", as_of - HOUR)]
    assert last_sent_in_campaign(touches, CAMPAIGN) == as_of - 3 * DAY
    assert last_sent_in_campaign(touches, "other") is None


def test_cadence_counts_from_the_last_send_to_the_next_window_opening(rules, make_lead, sent,
                                                                      as_of):
    # as_of is Wed 07:00 New York; the education window opens at 09:00 (14:00 UTC)
    opening = utc(2026, 11, 18, 14, 0)
    due = make_lead(touches=[sent(CAMPAIGN, "buyers-guide", opening - 7 * DAY)])
    d = evaluate(due, rules, as_of)
    assert (d.touch.step, d.touch.send_at) == ("funnel-benchmark", opening)
    early = make_lead(touches=[sent(CAMPAIGN, "buyers-guide", opening - 7 * DAY + HOUR)])
    d2 = evaluate(early, rules, as_of)
    assert (d2.touch, d2.skip_reason) == (None, "cadence")


def test_product_track_cadence_is_four_days(rules, act, make_lead, sent, as_of):
    def lead(days_ago):
        return make_lead(activities=[pricing_view(act, as_of)],
                         touches=[sent(CAMPAIGN, "case-study", as_of - days_ago * DAY)])

    assert evaluate(lead(4), rules, as_of).touch.send_at == as_of  # no window: send now
    assert evaluate(lead(3.9), rules, as_of).skip_reason == "cadence"


def test_other_campaigns_touches_do_not_reset_cadence(rules, make_lead, sent, as_of):
    lead = make_lead(touches=[sent("webinar-followup", "recording-and-slides", as_of - DAY)])
    assert evaluate(lead, rules, as_of).touch.step == "buyers-guide"


# -- weekly cap ------------------------------------------------------------------------------
def test_sent_this_week_window(sent, as_of):
    touches = [sent(CAMPAIGN, "a", as_of - 7 * DAY),                     # exactly 7 x 24 h
               sent(CAMPAIGN, "b", as_of - 7 * DAY + timedelta(seconds=1)),
               sent("webinar-followup", "c", as_of - HOUR),
               sent(CAMPAIGN, "d", as_of - HOUR, status=FAILED),
               sent(CAMPAIGN, "e", as_of, status=PLANNED)]
    assert sent_this_week(touches, as_of) == 2


def test_weekly_cap_counts_touches_across_campaigns(rules, make_lead, sent, as_of):
    assert rules.max_touches_per_week == 2
    other = "webinar-followup"
    capped = make_lead(touches=[sent(other, "recording-and-slides", as_of - 6 * DAY),
                                sent(other, "three-takeaways", as_of - 2 * DAY)])
    d = evaluate(capped, rules, as_of)
    assert (d.touch, d.skip_reason) == (None, "weekly_cap")
    older = make_lead(touches=[sent(other, "recording-and-slides", as_of - 8 * DAY),
                               sent(other, "three-takeaways", as_of - 2 * DAY)])
    assert evaluate(older, rules, as_of).touch.step == "buyers-guide"


def test_suppressed_and_pending_leads_are_not_due(rules, make_lead, sent, as_of):
    d = evaluate(make_lead(suppressed=True), rules, as_of)
    assert (d.touch, d.skip_reason) == (None, "suppressed")
    for status in (PLANNED, SENDING):
        pending = TouchFact(CAMPAIGN, "buyers-guide", 0, status, None)
        d = evaluate(make_lead(touches=[pending]), rules, as_of)
        assert (d.touch, d.skip_reason) == (None, "touch_pending")


# -- send window -----------------------------------------------------------------------------
def test_no_window_means_now(as_of):
    assert next_opening(None, NY, as_of) == as_of


@pytest.mark.parametrize(("as_of", "expected"), [
    (utc(2026, 11, 18, 12, 0), utc(2026, 11, 18, 14, 0)),   # Wed 07:00 EST -> 09:00 EST
    (utc(2026, 11, 18, 14, 0), utc(2026, 11, 18, 14, 0)),   # exactly at the opening
    (utc(2026, 11, 18, 14, 1), utc(2026, 11, 19, 14, 0)),   # just missed: next weekday
    (utc(2026, 11, 20, 15, 0), utc(2026, 11, 23, 14, 0)),   # Fri after 9 -> Monday
    (utc(2026, 11, 21, 3, 0), utc(2026, 11, 23, 14, 0)),    # Fri 22:00 local -> Monday
    (utc(2026, 7, 15, 12, 0), utc(2026, 7, 15, 13, 0)),     # summer: 09:00 EDT = 13:00 UTC
])
def test_window_opens_at_nine_in_new_york(as_of, expected):
    got = next_opening(WINDOW, NY, as_of)
    assert got == expected
    assert got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("as_of", "expected"), [
    # autumn: clocks go back on Sun 2026-11-01; Friday was EDT, Monday is EST
    (utc(2026, 10, 30, 12, 0), utc(2026, 10, 30, 13, 0)),
    (utc(2026, 10, 30, 15, 0), utc(2026, 11, 2, 14, 0)),
    # spring: clocks go forward on Sun 2026-03-08; Friday was EST, Monday is EDT
    (utc(2026, 3, 6, 12, 0), utc(2026, 3, 6, 14, 0)),
    (utc(2026, 3, 6, 15, 0), utc(2026, 3, 9, 13, 0)),
])
def test_window_across_dst_transitions(as_of, expected):
    got = next_opening(WINDOW, NY, as_of)
    assert got == expected
    assert got.astimezone(ZoneInfo(NY)).hour == 9


def test_daily_window_on_the_transition_days():
    daily = "0 9 * * *"
    assert next_opening(daily, NY, utc(2026, 10, 31, 14, 0)) == utc(2026, 11, 1, 14, 0)
    assert next_opening(daily, NY, utc(2026, 3, 7, 14, 1)) == utc(2026, 3, 8, 13, 0)
    assert next_opening(daily, "Europe/Berlin", utc(2026, 3, 28, 9, 0)) == utc(2026, 3, 29, 7, 0)


@pytest.mark.parametrize(("tz", "start"), [
    (NY, utc(2026, 11, 1, 4, 0)),                # repeated 01:00-02:00 local hour
    (NY, utc(2026, 3, 8, 5, 0)),                 # skipped 02:00-03:00 local hour
    ("Europe/Berlin", utc(2026, 10, 24, 23, 0)),
    ("Europe/Berlin", utc(2026, 3, 28, 23, 0)),
    ("Australia/Sydney", utc(2026, 4, 4, 14, 0)),
])
@pytest.mark.parametrize("cron", ["0 * * * *", "*/15 * * * *", "30 1 * * *", "0 3 * * *",
                                  WINDOW])
def test_next_opening_through_the_transition_hour(tz, start, cron):
    """Every 10 minutes through a DST transition: the opening is never before `as_of`, never
    moves backwards as `as_of` advances, and no opening in between is skipped (a repeated
    wall-clock time opens once, on its first pass, like cron)."""
    zone = ZoneInfo(tz)
    step = timedelta(minutes=5)
    # every 5-minute instant of the neighbourhood whose local time is an opening
    openings = []
    probe = start
    while probe < start + 6 * HOUR:
        local = probe.astimezone(zone)
        if local.fold == 0 and croniter.match(cron, local.replace(tzinfo=None)):
            openings.append(probe)
        probe += step
    t, previous = start, start
    while t < start + 5 * HOUR:
        got = next_opening(cron, tz, t)
        assert got >= t, (cron, tz, t, got)
        assert got >= previous, (cron, tz, t, got, previous)
        previous = got
        skipped = [o for o in openings if t <= o < got]
        assert not skipped, (cron, tz, t, got, skipped)
        t += timedelta(minutes=10)


def test_repeated_hour_opens_once():
    # 2026-11-01 in New York: 01:30 EDT (05:30 UTC), then 01:30 EST (06:30 UTC)
    cron = "30 1 * * *"
    assert next_opening(cron, NY, utc(2026, 11, 1, 5, 0)) == utc(2026, 11, 1, 5, 30)
    assert next_opening(cron, NY, utc(2026, 11, 1, 6, 0)) == utc(2026, 11, 2, 6, 30)
    assert next_opening("0 * * * *", NY, utc(2026, 11, 1, 6, 0)) == utc(2026, 11, 1, 7, 0)


def test_opening_inside_a_skipped_hour_moves_past_it():
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 never happens
    got = next_opening("30 2 * * *", NY, utc(2026, 3, 8, 6, 0))
    assert utc(2026, 3, 8, 7, 0) <= got <= utc(2026, 3, 8, 7, 30)
    # the hour after the gap keeps all its openings
    assert next_opening("*/20 * * * *", NY, utc(2026, 3, 8, 7, 0)) == utc(2026, 3, 8, 7, 0)
    assert next_opening("*/20 * * * *", NY, utc(2026, 3, 8, 7, 1)) == utc(2026, 3, 8, 7, 20)


def test_window_in_other_time_zones():
    # Wed 12:00 UTC is 13:00 in Berlin (after 09:00): next is Thu 09:00 CET = 08:00 UTC
    assert next_opening(WINDOW, "Europe/Berlin", utc(2026, 11, 18, 12, 0)) == \
        utc(2026, 11, 19, 8, 0)
    # ... and 23:00 in Sydney (AEDT, UTC+11): Thu 09:00 local = Wed 22:00 UTC
    assert next_opening(WINDOW, "Australia/Sydney", utc(2026, 11, 18, 12, 0)) == \
        utc(2026, 11, 18, 22, 0)


@pytest.mark.parametrize("tz", ["Not/AZone", "", None])
def test_unknown_time_zone_falls_back_to_utc(tz):
    assert next_opening(WINDOW, tz, utc(2026, 11, 18, 7, 0)) == utc(2026, 11, 18, 9, 0)


def test_planned_touch_is_scheduled_in_the_leads_time_zone(rules, make_lead, as_of):
    ny = evaluate(make_lead(), rules, as_of).touch
    berlin = evaluate(make_lead(timezone="Europe/Berlin"), rules, as_of).touch
    assert ny.send_at == utc(2026, 11, 18, 14, 0)
    assert berlin.send_at == utc(2026, 11, 19, 8, 0)
