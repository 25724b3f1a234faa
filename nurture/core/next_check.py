"""When the cycle must look at a lead again: the earliest moment its decision could change
without anything new happening to it.

The daily cycle's cost follows due and changed leads only (issue #13). Anything new —
an activity, an import, sales feedback, a suppression — clears `next_check_at` (the store
does that), so this module only answers "what changes with time alone?":

- the schedule: cadence elapsing after the last send, the weekly cap freeing a slot, an
  MQL's SLA, a recycled lead's wait;
- the conditions: engagement decays (every term with the same half-life, so the total is
  `E·0.5^(t/h)` until an activity leaves the horizon, which moves it further toward 0),
  `within_days` windows close, `no_engagement_days` spans fill up.

Every bound here is conservative (the lead is looked at no later than its decision could
change, possibly earlier) and no lead sleeps longer than `MAX_SLEEP`, so a rule this module
does not know about is still applied within a week.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel

from nurture.core.conditions import Facts
from nurture.core.config import Condition, Config
from nurture.core.domain import Decision, LeadSnapshot, SkipReason
from nurture.core.scheduling import MAY_HAVE_SENT, WEEK

MAX_SLEEP = timedelta(days=7)
ROUNDING = 0.005  # scores are compared after rounding to 2 decimals
# a cycle plans a touch for the window's next opening, so cadence is checked against an
# opening up to a day ahead: looking a day early finds the same opening, never a later one
OPENING_SLACK = timedelta(days=1)

# the schedule decides for these; the conditions may still wake the lead earlier
_SCHEDULED = {SkipReason.CADENCE, SkipReason.WEEKLY_CAP}
# looked at every run: a pending touch settles, a pause is lifted
_EVERY_RUN = {SkipReason.PENDING, SkipReason.PAUSED}


@dataclass(slots=True, frozen=True)
class TimeTriggers:
    """Every time-dependent threshold in a config, gathered once per run."""

    score: tuple[float, ...] = ()       # score_at_least
    engagement: tuple[float, ...] = ()  # engagement_at_least, engagement_below
    windows: tuple[int, ...] = ()       # activity within_days
    quiet: tuple[int, ...] = ()         # no_engagement_days

    @classmethod
    def from_config(cls, config: Config) -> TimeTriggers:
        score: set[float] = set()
        engagement: set[float] = set()
        windows: set[int] = set()
        quiet: set[int] = set()
        for c in _conditions([config.lifecycle, *config.campaigns]):
            if c.score_at_least is not None:
                score.add(c.score_at_least)
            for v in (c.engagement_at_least, c.engagement_below):
                if v is not None:
                    engagement.add(v)
            if c.within_days is not None:
                windows.add(c.within_days)
            if c.no_engagement_days is not None:
                quiet.add(c.no_engagement_days)
        return cls(tuple(sorted(score)), tuple(sorted(engagement)), tuple(sorted(windows)),
                   tuple(sorted(quiet)))


def _conditions(obj: object) -> Iterator[Condition]:
    """Every `Condition` anywhere in the config (nested ones included)."""
    if isinstance(obj, Condition):
        yield obj
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _conditions(getattr(obj, name))
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _conditions(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _conditions(item)


def next_check_at(d: Decision, lead: LeadSnapshot, facts: Facts, triggers: TimeTriggers,
                  half_life_days: float, horizon_days: float, cadence_days: int | None,
                  as_of: datetime) -> datetime | None:
    """The decision's wake-up time (None: look again at the next run)."""
    if d.skip_reason in _EVERY_RUN:
        return None
    if d.skip_reason == SkipReason.RECYCLE_WAIT:
        return d.recycle_until
    if d.handoff is not None:
        return d.handoff.sla_due_at
    if d.skip_reason == SkipReason.WITH_SALES:
        return lead.sla_due_at  # None for sales stages: the cycle does not load those
    wake = as_of + MAX_SLEEP
    if d.touch is not None and cadence_days is not None:
        wake = min(wake, d.touch.send_at + timedelta(days=cadence_days) - OPENING_SLACK)
    elif d.skip_reason in _SCHEDULED:
        wake = min(wake, _schedule_frees(lead, d, cadence_days, as_of))
    change = condition_change(facts, d.stage_entered_at, triggers, half_life_days,
                              horizon_days, as_of)
    if change is not None:
        wake = min(wake, change)
    if lead.next_activity_at is not None:  # a history loaded ahead (simulations)
        wake = min(wake, lead.next_activity_at)
    return max(wake, as_of)


def _schedule_frees(lead: LeadSnapshot, d: Decision, cadence_days: int | None,
                    as_of: datetime) -> datetime:
    """Cadence: the last send in the campaign plus the cadence (less `OPENING_SLACK`);
    weekly cap: when the oldest send of the last 7 days leaves the week."""
    sent = [(t.campaign, t.sent_at) for t in lead.touches
            if t.status in MAY_HAVE_SENT and t.sent_at is not None]
    if d.skip_reason == SkipReason.CADENCE and cadence_days is not None:
        last = max((at for c, at in sent if c == d.campaign), default=None)
        if last is not None:
            return last + timedelta(days=cadence_days) - OPENING_SLACK
    week = [at for _, at in sent if at > as_of - WEEK]
    return min(week) + WEEK if week else as_of


def condition_change(facts: Facts, stage_entered_at: datetime, triggers: TimeTriggers,
                     half_life_days: float, horizon_days: float, as_of: datetime
                     ) -> datetime | None:
    """The earliest moment any time-dependent condition could change value for this lead
    (None: none can without something new happening)."""
    times: list[datetime] = []
    decay = _decay_crossing(facts, triggers, half_life_days, horizon_days)
    if decay is not None:
        times.append(as_of + decay)
    for days in triggers.windows:  # an activity leaves a `within_days` window
        span = timedelta(days=days)
        times += [a.occurred_at + span for a in facts.activities
                  if a.occurred_at + span > as_of]
    if triggers.quiet:
        last = facts.last_engaged_at()
        start = stage_entered_at if last is None else max(last, stage_entered_at)
        times += [start + timedelta(days=n) for n in triggers.quiet
                  if start + timedelta(days=n) > as_of]
    return min(times) if times else None


def _decay_crossing(facts: Facts, triggers: TimeTriggers, half_life_days: float,
                    horizon_days: float) -> timedelta | None:
    """How soon decaying engagement could cross a score or engagement threshold: the
    engagement `E` moves toward 0 as `E·0.5^(t/h)`; activities leaving the horizon move it
    by at most `slack` more, and rounding by `ROUNDING`."""
    e = facts.engagement
    if abs(e) < ROUNDING or half_life_days <= 0:
        return None
    slack = ROUNDING + 0.5 ** (horizon_days / half_life_days) * sum(
        abs(a.points) for a in facts.activities)
    best: float | None = None
    for v in (*triggers.engagement, *(s - facts.fit for s in triggers.score)):
        if v != 0 and (v > 0) != (e > 0):
            continue  # on the other side of 0: decay never reaches it
        target = abs(v) + slack
        if abs(e) <= abs(v):
            continue  # already past it, and moving away
        days = 0.0 if abs(e) <= target else half_life_days * math.log2(abs(e) / target)
        best = days if best is None else min(best, days)
    return None if best is None else timedelta(days=best)
