"""The lead funnel report (`nurture report funnel`, and a Prefect artifact after each cycle).

`compute_funnel` is a pure function of plain rows — leads, transitions, handoffs — and an
`as_of` time, so every number in the report can be checked by hand in a unit test. The lead
store reads the rows in bulk (`nurture.store.funnel_queries.load_funnel_rows`); nothing here
touches a database.

The report describes the funnel **as it stood at `as_of`**: leads created after it are left
out, transitions after it are ignored (a lead's stage at `as_of` is rebuilt from its
transitions), handoffs created after it are left out, and a handoff resolved after it counts
as still pending. With `as_of` = now this is simply the current funnel.

Definitions (the numbers marketing and sales argue about, so they are spelled out):

* **Stage history of a lead.** Its transitions in time order (ties: row id, i.e. the order
  they were written). The lead entered the first transition's `from_stage` when it was
  created (`created_at`), and each transition's `to_stage` at the transition's `at`. A lead
  with no transitions has been in its current `lifecycle_stage` since `stage_entered_at`.
* **leads_by_stage** — leads per lifecycle stage at `as_of`; every stage is listed, zeros
  included, in funnel order (`new` … `customer`, then `recycled`, `disqualified`).
* **reached** — leads that ever entered a stage per their stage history. A lead created
  directly in a stage has entered it. A lead is *not* assumed to have passed through the
  stages it skipped: a `new` lead that became an MQL on its first cycle never entered
  `nurturing`, and an MQL that sales turned straight into an opportunity never entered `sal`
  or `sql`. The funnel counts what happened, not what the stage order implies.
* **conversion** — for each pair of consecutive funnel stages (new→nurturing→mql→sal→sql→
  opportunity→customer): `reached_from` = leads that ever entered `from`; `reached_to` =
  those of them that entered `to` *after* first entering `from`; `rate` = reached_to /
  reached_from (null when nobody reached `from`). So a rate is never above 1, and leads that
  skipped `from` are in neither number (they still show in `reached`).
* **median_days_in_stage** — over every *stay* in a stage (a lead recycled twice has two
  stays in `recycled`): days from entering the stage to leaving it. Stays still open at
  `as_of` are counted up to `as_of` (so they pull the median down while the funnel is young;
  this keeps stages nobody has left yet — `customer`, a fresh `mql` — from showing null).
  Null when no lead has been in the stage. Days are fractional, rounded to 2 places.
* **mql** — over handoffs (one per MQL event; a lead that became an MQL twice has two):
  `handed_off`, then by status at `as_of`: `accepted`, `rejected`, `expired`, `pending`;
  `overdue` = pending handoffs whose SLA is already past at `as_of` (the next cycle expires
  them). `acceptance_rate` = accepted / resolved (accepted + rejected + expired).
  SLA: a handoff *is due* when it is resolved, or pending with `sla_due_at` <= `as_of`;
  `sla_due` counts those. `accepted_within_sla` = accepted handoffs with
  `resolved_at` < `sla_due_at` (the daily cycle treats the due instant itself as expired).
  **sla_compliance** = accepted_within_sla / sla_due: expired handoffs, overdue pending ones,
  late acceptances and all rejections count against it. Because a prompt *reject* is also a
  timely answer from sales, `answered_within_sla` (accepted or rejected before `sla_due_at`)
  and `sla_response_rate` = answered_within_sla / sla_due are reported beside it. Rates are
  fractions (0–1, 4 places), null when the denominator is 0.
* **rejects_by_reason** — rejected handoffs by `outcome_reason` (the `routing.sales_rejected`
  code; a missing one shows as "(unspecified)").
* **mqls_by_source** — handoffs by the lead's `source` (missing or empty → "(unknown)"); they
  add up to `mql.handed_off`.
* **recycled** — transitions into `recycled` up to `as_of` (events, not leads), by reason:
  `sla_expired` (rule `routing.mql.sla_hours`), the sales reject code (rule
  `routing.sales_rejected.<code>`, written for rejects and for deals lost with a code),
  `no_engagement` (the cold-lead rule `routing.recycle.when…`), `deal_lost` (rule
  `sales.lost`: a lost deal without a code) and `other` for anything else.

All `by_reason`/`by_source` mappings are ordered by count (highest first), then name.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from nurture.core.domain import (
    CUSTOMER,
    LIFECYCLE_STAGES,
    MQL,
    NEW,
    NURTURING,
    OPPORTUNITY,
    RECYCLED,
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
REJECT_RULE_PREFIX = "routing.sales_rejected."
COLD_RULE_PREFIX = "routing.recycle"
LOST_RULE = "sales.lost"
_DAY = 86400.0
_ZERO = timedelta(0)


class FunnelLead(NamedTuple):
    id: int
    source: str | None
    lifecycle_stage: str
    stage_entered_at: datetime
    created_at: datetime


class FunnelTransition(NamedTuple):
    """One transitions row. `rule` and `reason` are only looked at for transitions into
    `recycled` (the loader leaves them None on the others); `id` orders transitions written
    at the same instant (0 keeps the given order)."""

    lead_id: int
    from_stage: str
    to_stage: str
    at: datetime
    rule: str | None = None
    reason: str | None = None
    id: int = 0


class FunnelHandoff(NamedTuple):
    lead_id: int
    status: str
    created_at: datetime
    sla_due_at: datetime
    resolved_at: datetime | None = None
    outcome_reason: str | None = None


def recycle_reason(rule: str | None, reason: str | None) -> str:
    """The report's reason for one transition into `recycled` (see the module docstring)."""
    rule = rule or ""
    if rule == SLA_RULE or (reason or "").startswith("sla_expired"):
        return "sla_expired"
    if rule.startswith(REJECT_RULE_PREFIX):
        return rule[len(REJECT_RULE_PREFIX):] or "other"
    if rule.startswith(COLD_RULE_PREFIX):
        return "no_engagement"
    if rule == LOST_RULE:
        return "deal_lost"
    return "other"


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _ranked(counter: Counter) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _median_days(durations: list[timedelta] | None) -> float | None:
    """Median in days (2 places); a negative duration (inconsistent times) counts as 0."""
    if not durations:
        return None
    if min(durations) < _ZERO:
        durations = [max(d, _ZERO) for d in durations]
    return round(statistics.median(durations).total_seconds() / _DAY, 2)


def _tr_key(tr: FunnelTransition) -> tuple[datetime, int]:
    return tr.at, tr.id


def compute_funnel(leads: Iterable[FunnelLead], transitions: Iterable[FunnelTransition],
                   handoffs: Iterable[FunnelHandoff], as_of: datetime) -> dict[str, Any]:
    """The funnel report as a JSON-ready dict (definitions: the module docstring).

    Rows may be the NamedTuples above or anything with the same attributes; times must be
    timezone-aware. One pass over each input; per-lead work is plain tuples and counters.
    """
    as_of = _utc(as_of)
    history, recycled = _histories(transitions, as_of)
    paths, stays, source_of = _lead_paths(leads, history, as_of)
    now_in, reached, converted = _path_counts(paths)
    total = sum(now_in.values())
    # plain strings in the report (its keys go to JSON, Prefect artifacts and the CLI as is)
    stages = [str(s) for s in LIFECYCLE_STAGES] + sorted(
        (set(now_in) | set(stays)) - set(LIFECYCLE_STAGES))
    tally = _HandoffTally()
    for h in handoffs:
        tally.add(h, source_of, as_of)
    return {
        "as_of": as_of.isoformat(),
        "leads_total": total,
        "leads_by_stage": {s: now_in[s] for s in stages},
        "reached": {s: reached[s] for s in stages},
        "conversion": [{"from": str(a), "to": str(b), "reached_from": reached[a],
                        "reached_to": converted[a], "rate": _rate(converted[a], reached[a])}
                       for a, b in FUNNEL_PAIRS],
        "median_days_in_stage": {s: _median_days(stays.get(s)) for s in stages},
        "mql": tally.mql_section(),
        "rejects_by_reason": _ranked(tally.rejects),
        "mqls_by_source": _ranked(tally.by_source),
        "recycled": {"count": sum(recycled.values()), "by_reason": _ranked(recycled)},
    }


def _histories(transitions: Iterable[FunnelTransition], as_of: datetime
               ) -> tuple[dict[int, list[FunnelTransition]], Counter]:
    """Transitions grouped per lead (unsorted), and recycle events up to `as_of` by reason."""
    history: dict[int, list[FunnelTransition]] = defaultdict(list)
    recycled: Counter = Counter()
    for tr in transitions:
        # later ones too: the first one after as_of says which stage a lead was in at as_of
        history[tr.lead_id].append(tr)
        if tr.to_stage == RECYCLED and tr.at <= as_of:
            recycled[recycle_reason(tr.rule, tr.reason)] += 1
    return history, recycled


def _lead_paths(leads: Iterable[FunnelLead], history: dict[int, list[FunnelTransition]],
                as_of: datetime
                ) -> tuple[Counter, dict[str, list[timedelta]], dict[int, str | None]]:
    """Per lead only its path (the stages it went through, in order) is counted: paths repeat
    a lot, so reached/converted are worked out once per distinct path afterwards. Stays are
    kept as timedeltas (no float conversion per stay). Also returns each lead's source."""
    paths: Counter[tuple[str, ...]] = Counter()
    stays: dict[str, list[timedelta]] = defaultdict(list)
    source_of: dict[int, str | None] = {}
    for lead in leads:
        if lead.created_at > as_of:
            continue
        source_of[lead.id] = lead.source
        trs = history.get(lead.id)
        if trs is None:
            stage = lead.lifecycle_stage
            stays[stage].append(as_of - lead.stage_entered_at)
            paths[(stage,)] += 1
        else:
            paths[_walk_history(lead, trs, as_of, stays)] += 1
    return paths, stays, source_of


def _walk_history(lead: FunnelLead, trs: list[FunnelTransition], as_of: datetime,
                  stays: dict[str, list[timedelta]]) -> tuple[str, ...]:
    """One lead's path up to `as_of`; appends the duration of each of its stays to `stays`
    (sorts `trs` in place: they are only looked at once)."""
    if len(trs) > 1:
        trs.sort(key=_tr_key)
    stage, entered = trs[0].from_stage, lead.created_at
    path = [stage]
    for tr in trs:
        if tr.at > as_of:
            break
        stays[stage].append(tr.at - entered)
        stage, entered = tr.to_stage, tr.at
        path.append(stage)
    stays[stage].append(as_of - entered)
    return tuple(path)


def _path_counts(paths: Counter) -> tuple[Counter, Counter, Counter]:
    """From path counts: leads now in each stage, leads that reached each stage, and per
    funnel pair the leads that entered `to` after first entering `from` (keyed by `from`)."""
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


class _HandoffTally:
    """Running handoff counts for the `mql`, `rejects_by_reason` and `mqls_by_source`
    sections, each handoff seen as it stood at `as_of`."""

    def __init__(self) -> None:
        self.status_count: Counter = Counter()
        self.due = self.overdue = self.accepted_in_time = self.answered_in_time = 0
        self.rejects: Counter = Counter()
        self.by_source: Counter = Counter()

    def add(self, h: FunnelHandoff, source_of: dict[int, str | None], as_of: datetime) -> None:
        if h.created_at > as_of:
            return
        status, resolved_at = h.status, h.resolved_at
        if status != PENDING and resolved_at is not None and resolved_at > as_of:
            status, resolved_at = PENDING, None
        self.status_count[status] += 1
        source = source_of.get(h.lead_id)
        self.by_source[source or UNKNOWN_SOURCE] += 1
        if status == PENDING:
            if h.sla_due_at <= as_of:
                self.overdue += 1
                self.due += 1
            return
        self.due += 1
        in_time = resolved_at is not None and resolved_at < h.sla_due_at
        if status == ACCEPTED:
            self.accepted_in_time += in_time
            self.answered_in_time += in_time
        elif status == REJECTED:
            self.answered_in_time += in_time
            self.rejects[h.outcome_reason or UNSPECIFIED_REASON] += 1

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
