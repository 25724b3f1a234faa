"""The funnel report assembled from its aggregates (definitions: `nurture.core.funnel`).

Two producers count the same things: `compute_funnel` walks plain rows in Python (the
reference), and the lead store counts in SQL (`nurture.store.funnel_queries.funnel_report`)
so that only aggregates leave the database. Both hand their counts to `funnel_dict`, so the
report's shape, rounding, ordering and classification are written once, here: the recycle
reasons of a few (rule, reason) groups, the handoff counters of a few (status, reason,
source) groups and the median of a stage's middle stays.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from nurture.core.domain import (
    CUSTOMER,
    LIFECYCLE_STAGES,
    MQL,
    NEW,
    NURTURING,
    OPPORTUNITY,
    SAL,
    SQL,
    HandoffStatus,
)

FUNNEL_STAGES = (NEW, NURTURING, MQL, SAL, SQL, OPPORTUNITY, CUSTOMER)
FUNNEL_PAIRS = tuple(zip(FUNNEL_STAGES, FUNNEL_STAGES[1:], strict=False))
PENDING, ACCEPTED, REJECTED, EXPIRED = HandoffStatus
RESOLVED = (ACCEPTED, REJECTED, EXPIRED)
UNKNOWN_SOURCE = "(unknown)"
UNSPECIFIED_REASON = "(unspecified)"
SLA_RULE = "routing.mql.sla_hours"
# only this much of a recycle's free-text reason matters (the SQL groups by this prefix)
SLA_REASON_PREFIX = "sla_expired"
REJECT_RULE_PREFIX = "routing.sales_rejected."
COLD_RULE_PREFIX = "routing.recycle"
LOST_RULE = "sales.lost"
_DAY = 86400.0
_ZERO = timedelta(0)


def recycle_reason(rule: str | None, reason: str | None) -> str:
    """The report's reason for one transition into `recycled` (see `nurture.core.funnel`).
    Of `reason` only its first len(SLA_REASON_PREFIX) characters are looked at."""
    rule = rule or ""
    if rule == SLA_RULE or (reason or "").startswith(SLA_REASON_PREFIX):
        return "sla_expired"
    if rule.startswith(REJECT_RULE_PREFIX):
        return rule[len(REJECT_RULE_PREFIX):] or "other"
    if rule.startswith(COLD_RULE_PREFIX):
        return "no_engagement"
    if rule == LOST_RULE:
        return "deal_lost"
    return "other"


def median_days(durations: Sequence[timedelta] | None) -> float | None:
    """Median in days (2 places); a negative duration (inconsistent times) counts as 0.

    Clamping is monotone, so the sorted middle one (odd count) or two (even count) of all
    the stays give the same answer as all of them: the store passes just those."""
    if not durations:
        return None
    if min(durations) < _ZERO:
        durations = [max(d, _ZERO) for d in durations]
    return round(statistics.median(durations).total_seconds() / _DAY, 2)


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _ranked(counter: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def path_counts(paths: Mapping[tuple[str, ...], int]) -> tuple[Counter, Counter, Counter]:
    """From the number of leads per path (the stages a lead went through, in order): leads
    now in each stage, leads that reached each stage, and per funnel pair the leads that
    entered `to` after first entering `from` (keyed by `from`). Paths repeat a lot, so this
    is done once per distinct path."""
    now_in: Counter = Counter()
    reached: Counter = Counter()
    converted: Counter = Counter()
    for path, n in paths.items():
        now_in[path[-1]] += n
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for i, st in enumerate(path):
            first.setdefault(st, i)
            last[st] = i
        for st in first:
            reached[st] += n
        for a, b in FUNNEL_PAIRS:
            i = first.get(a)
            if i is not None and last.get(b, -1) > i:
                converted[a] += n
    return now_in, reached, converted


class HandoffTally:
    """Handoff counts for the `mql`, `rejects_by_reason` and `mqls_by_source` sections.

    `count` takes handoffs already seen as they stood at `as_of` (the effective status),
    one or a group of `n` alike at a time: `overdue` of them pending past their SLA,
    `in_time` of them resolved before it."""

    def __init__(self) -> None:
        self.status_count: Counter = Counter()
        self.due = self.overdue = self.accepted_in_time = self.answered_in_time = 0
        self.rejects: Counter = Counter()
        self.by_source: Counter = Counter()

    def count(self, status: str, outcome_reason: str | None, source: str | None, n: int = 1,
              overdue: int = 0, in_time: int = 0) -> None:
        self.status_count[status] += n
        self.by_source[source or UNKNOWN_SOURCE] += n
        if status == PENDING:
            self.overdue += overdue
            self.due += overdue
            return
        self.due += n
        if status == ACCEPTED:
            self.accepted_in_time += in_time
            self.answered_in_time += in_time
        elif status == REJECTED:
            self.answered_in_time += in_time
            self.rejects[outcome_reason or UNSPECIFIED_REASON] += n

    def mql_section(self) -> dict[str, Any]:
        status_count = self.status_count
        resolved = sum(status_count[s] for s in RESOLVED)
        return {
            "handed_off": sum(status_count.values()),
            **{str(s): status_count[s] for s in (*RESOLVED, PENDING)},
            "overdue": self.overdue,
            "acceptance_rate": _rate(status_count[ACCEPTED], resolved),
            "sla_due": self.due,
            "accepted_within_sla": self.accepted_in_time,
            "sla_compliance": _rate(self.accepted_in_time, self.due),
            "answered_within_sla": self.answered_in_time,
            "sla_response_rate": _rate(self.answered_in_time, self.due),
        }


class FunnelCounts(NamedTuple):
    """What the report is made of. Per stage: `now_in` (leads in it at `as_of`), `reached`
    (leads that ever entered it) and `stays` (durations of its stays whose median is
    reported: all of them, or only the middle one or two in sorted order; a stage with no
    stay has no key); `converted` per funnel pair keyed by its `from` stage; `recycled`
    events by report reason."""

    now_in: Mapping[str, int]
    reached: Mapping[str, int]
    converted: Mapping[str, int]
    stays: Mapping[str, Sequence[timedelta]]
    handoffs: HandoffTally
    recycled: Mapping[str, int]


def funnel_dict(as_of: datetime, c: FunnelCounts) -> dict[str, Any]:
    """The report as a JSON-ready dict; `as_of` timezone-aware UTC."""
    now_in, reached, converted = Counter(c.now_in), Counter(c.reached), Counter(c.converted)
    # plain strings in the report (its keys go to JSON, Prefect artifacts and the CLI as is)
    stages = [str(s) for s in LIFECYCLE_STAGES] + sorted(
        (set(now_in) | set(c.stays)) - set(LIFECYCLE_STAGES))
    tally = c.handoffs
    return {
        "as_of": as_of.isoformat(),
        "leads_total": sum(now_in.values()),
        "leads_by_stage": {s: now_in[s] for s in stages},
        "reached": {s: reached[s] for s in stages},
        "conversion": [{"from": str(a), "to": str(b), "reached_from": reached[a],
                        "reached_to": converted[a], "rate": _rate(converted[a], reached[a])}
                       for a, b in FUNNEL_PAIRS],
        "median_days_in_stage": {s: median_days(c.stays.get(s)) for s in stages},
        "mql": tally.mql_section(),
        "rejects_by_reason": _ranked(tally.rejects),
        "mqls_by_source": _ranked(tally.by_source),
        "recycled": {"count": sum(c.recycled.values()), "by_reason": _ranked(c.recycled)},
    }
