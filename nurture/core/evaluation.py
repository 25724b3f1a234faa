"""One lead, one moment: score, segment, route, then pick its next touch.

`evaluate` is the heart of the daily cycle. It is a pure function of a `LeadSnapshot`, the
compiled `Rules` and `as_of`, so every routing and content decision can be tested (and
explained) without Prefect or a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from nurture.core.conditions import Facts
from nurture.core.domain import (
    DISQUALIFIED,
    FAILED,
    MARKETING_STAGES,
    MQL,
    NEW,
    NURTURING,
    PLANNED,
    RECYCLED,
    SALES_STAGES,
    SENDING,
    Decision,
    Grade,
    LeadSnapshot,
    MqlHandoff,
    PlannedTouch,
    SkipReason,
    Transition,
)
from nurture.core.next_check import next_check_at
from nurture.core.rules import CompiledTrack, Rules
from nurture.core.scheduling import (
    cadence_elapsed,
    last_sent_in_campaign,
    next_opening,
    sent_this_week,
)
from nurture.core.segmentation import buying_stage
from nurture.core.selection import (
    choose_campaign,
    choose_track,
    next_step,
    pick_variant,
    seen_steps,
)

SKIP_PAUSED = SkipReason.PAUSED  # the name tests and older callers use


def counting_activities(lead: LeadSnapshot, as_of: datetime):
    """Activities that count now: after the last recycle (engagement restarts) and not after
    `as_of` (so simulations can load a future history)."""
    since = lead.engagement_since
    return [a for a in lead.activities
            if a.occurred_at <= as_of and (since is None or a.occurred_at > since)]


def lead_facts(lead: LeadSnapshot, rules: Rules, as_of: datetime) -> Facts:
    """Score a lead: the facts every condition looks at, with fit, grade and engagement."""
    facts = Facts(lead.fields, 0.0, 0.0, Grade.D, counting_activities(lead, as_of), as_of,
                  lead.stage_entered_at)
    facts.fit = rules.scores.fit(facts)
    facts.grade = rules.scores.grade(facts.fit)
    facts.engagement = rules.scores.engagement(facts.activities, as_of)
    return facts


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def evaluate(lead: LeadSnapshot, rules: Rules, as_of: datetime,
             paused: frozenset[str] = frozenset()) -> Decision:
    """Decide everything about one lead for the cycle at `as_of`. Campaigns in `paused`
    keep their leads but plan nothing for them."""
    facts = lead_facts(lead, rules, as_of)
    d = Decision(
        lead_id=lead.id, fit_score=facts.fit, engagement_score=facts.engagement,
        score=round(facts.fit + facts.engagement, 2), grade=facts.grade,
        buying_stage=buying_stage(rules.stages, facts), lifecycle_stage=lead.lifecycle_stage,
        stage_entered_at=lead.stage_entered_at, engagement_since=lead.engagement_since,
        recycle_count=lead.recycle_count, recycle_until=lead.recycle_until,
        campaign=lead.campaign, track=lead.track, track_rounds=dict(lead.track_rounds),
        version=lead.version)
    skip = _route(lead, _Routing(rules, as_of, facts, d))
    if skip is not None:
        d.skip_reason = skip
    else:
        _plan_touch(lead, rules, as_of, facts, d, paused)
    d.next_check_at = next_check_at(
        d, lead, facts, rules.triggers, rules.scores.half_life_days, rules.horizon_days,
        rules.cadence_days(d.campaign, d.track), as_of)
    return d


@dataclass(slots=True)
class _Routing:
    """One lead's decision in the making: stage moves and recycles are written into `d`."""

    rules: Rules
    as_of: datetime
    facts: Facts
    d: Decision

    def move(self, to: str, reason: str, rule: str | None = None) -> None:
        d = self.d
        d.transitions.append(Transition(d.lifecycle_stage, to, reason, rule))
        d.lifecycle_stage = to
        d.stage_entered_at = self.as_of

    def recycle(self, reason: str, rule: str | None, wait_days: int) -> bool:
        """Return the lead to marketing; False when it ran out of recycles (disqualified)."""
        d, rules, as_of, facts = self.d, self.rules, self.as_of, self.facts
        if d.recycle_count >= rules.max_recycles:
            self.move(DISQUALIFIED, f"{reason}; recycled {d.recycle_count} times already "
                      f"(max_recycles {rules.max_recycles})", "routing.max_recycles")
            d.campaign = d.track = None
            return False
        self.move(RECYCLED, reason, rule)
        d.recycle_count += 1
        d.engagement_since = as_of
        d.recycle_until = as_of + timedelta(days=wait_days)
        # engagement restarts from zero: old evidence no longer counts
        facts.activities = []
        facts.engagement = 0.0
        facts.stage_entered_at = as_of
        d.engagement_score = 0.0
        d.score = facts.fit
        d.buying_stage = buying_stage(rules.stages, facts)
        return True


def _route(lead: LeadSnapshot, r: _Routing) -> SkipReason | None:
    """Lifecycle routing before any content: the reason to stop here, or None to go on and
    plan the lead's next touch."""
    stage, rules, facts, d = lead.lifecycle_stage, r.rules, r.facts, r.d
    if stage == DISQUALIFIED:
        return SkipReason.DISQUALIFIED
    if stage in SALES_STAGES:
        return SkipReason.WITH_SALES
    # MQL first: a lead meeting the rule leaves its tracks at once.
    if stage in MARKETING_STAGES and rules.mql.test(facts):
        path, words = rules.mql.explain(facts, "routing.mql.when")
        r.move(MQL, f"MQL rule {path} held: {words} (score {_fmt(d.score)}, grade {d.grade})",
               path)
        d.handoff = MqlHandoff(path, words, r.as_of + timedelta(hours=rules.sla_hours))
        return SkipReason.MQL
    if stage == MQL:
        return _sla(lead, r)
    if stage == NURTURING and rules.recycle is not None and rules.recycle.test(facts):
        path, words = rules.recycle.explain(facts, "routing.recycle.when")
        return None if r.recycle(f"went cold: {words}", path, 0) else SkipReason.DISQUALIFIED
    if stage == RECYCLED:
        return _after_recycle(r)
    return None


def _sla(lead: LeadSnapshot, r: _Routing) -> SkipReason | None:
    """An MQL waits for sales until its SLA; then the handoff expires and it is recycled."""
    if lead.sla_due_at is None or r.as_of < lead.sla_due_at:
        return SkipReason.WITH_SALES
    r.d.expire_handoff = True
    if not r.recycle(f"sla_expired: not accepted within {r.rules.sla_hours} h",
                     "routing.mql.sla_hours", 0):
        return SkipReason.DISQUALIFIED
    return None


def _after_recycle(r: _Routing) -> SkipReason | None:
    """A recycled lead is nurtured again once it engages, or when its rest is over."""
    engaged = [a for a in r.facts.activities if a.points > 0]
    if engaged:
        first = min(engaged, key=lambda a: a.occurred_at)
        r.move(NURTURING, f"re-engaged: {first.type} on {first.occurred_at:%Y-%m-%d} after "
               "recycling", "engagement_after_recycle")
    elif r.d.recycle_until is not None and r.as_of < r.d.recycle_until:
        return SkipReason.RECYCLE_WAIT
    return None


def _plan_touch(lead: LeadSnapshot, rules: Rules, as_of: datetime, facts: Facts,
                d: Decision, paused: frozenset[str] = frozenset()) -> Decision:
    """Content: the lead's campaign and track, then its next step if a send is due now."""
    campaign = choose_campaign(rules.campaigns, d.lifecycle_stage, facts)
    if campaign is None:
        d.campaign = d.track = None
        d.skip_reason = SkipReason.NO_CAMPAIGN
        return d
    if campaign.name != d.campaign:
        d.campaign, d.track, d.track_rounds = campaign.name, None, {}
    if d.lifecycle_stage == NEW:
        d.transitions.append(Transition(NEW, NURTURING, f"enrolled in campaign {campaign.name}",
                                        f"{campaign.name}.audience"))
        d.lifecycle_stage = NURTURING
        d.stage_entered_at = as_of
    track = choose_track(campaign, d.lifecycle_stage, d.buying_stage)
    if track is None:
        d.skip_reason = SkipReason.NO_TRACK
        return d
    d.track = track.track.name
    # Cadence is measured between actual sends: a touch that would go out at the window's
    # next opening is due when that opening is cadence_days x 24 h after the last send, so a
    # weekly track stays weekly even though the cycle runs before the window opens.
    window = track.track.send_window
    send_at = next_opening(window.cron if window else None, lead.timezone, as_of)
    d.skip_reason = (_not_due(lead, rules, as_of, campaign.name, track, send_at, paused)
                     or _next_touch(lead, facts, d, campaign.name, track, send_at))
    return d


def _not_due(lead: LeadSnapshot, rules: Rules, as_of: datetime, campaign: str,
             track: CompiledTrack, send_at: datetime, paused: frozenset[str]
             ) -> SkipReason | None:
    """Why no touch may be planned now (paused, suppressed, pending, cadence, weekly cap)."""
    if campaign in paused:
        return SkipReason.PAUSED
    if lead.suppressed:
        return SkipReason.SUPPRESSED
    if any(t.status in (PLANNED, SENDING) for t in lead.touches):
        return SkipReason.PENDING
    if not cadence_elapsed(last_sent_in_campaign(lead.touches, campaign),
                           track.track.cadence_days, send_at):
        return SkipReason.CADENCE
    if sent_this_week(lead.touches, as_of) >= rules.max_touches_per_week:
        return SkipReason.WEEKLY_CAP
    return None


def _next_touch(lead: LeadSnapshot, facts: Facts, d: Decision, campaign: str,
                track: CompiledTrack, send_at: datetime) -> SkipReason | None:
    """Plan the track's next step into `d.touch`, or say why there is none."""
    round_ = d.track_rounds.get(track.track.name, 0)
    step, round_ = next_step(track, seen_steps(lead.touches, campaign), round_, facts)
    if step is None:
        return SkipReason.EXHAUSTED
    if any(t.campaign == campaign and t.step == step.step.id and t.round == round_
           and t.status == FAILED for t in lead.touches):
        # never skip content silently: the lead waits at this step until a person releases
        # the touch (`nurture touches release`) — listed by `nurture touches list`
        return SkipReason.STEP_FAILED
    if round_:
        d.track_rounds[track.track.name] = round_
    d.touch = PlannedTouch(
        campaign=campaign, track=track.track.name, step=step.step.id, round=round_,
        variant=pick_variant(step, lead.email, campaign), send_at=send_at)
    return None
