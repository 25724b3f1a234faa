"""The lead funnel report (`nurture report funnel`, and a Prefect artifact after each cycle).

`compute_funnel` is a pure function of plain rows — leads, transitions, handoffs — and an
`as_of` time, so every number in the report can be checked by hand in a unit test: the
reference definition. The product's report is counted by the database instead
(`nurture.store.funnel_queries.funnel_report`: aggregate SQL, only counts come back, so memory
does not grow with the leads) and must equal this function on the same rows
(`load_funnel_rows`); both assemble the dict with `nurture.core.funnel_counts.funnel_dict`.
Nothing here touches a database.

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

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from nurture.core.domain import RECYCLED
from nurture.core.funnel_counts import (
    FUNNEL_PAIRS,
    FUNNEL_STAGES,
    PENDING,
    FunnelCounts,
    HandoffTally,
    funnel_dict,
    path_counts,
    recycle_reason,
)

__all__ = ["FUNNEL_PAIRS", "FUNNEL_STAGES", "FunnelHandoff", "FunnelLead", "FunnelTransition",
           "compute_funnel", "recycle_reason"]


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


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


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
    now_in, reached, converted = path_counts(paths)
    tally = HandoffTally()
    for h in handoffs:
        _count_handoff(tally, h, source_of, as_of)
    return funnel_dict(as_of, FunnelCounts(now_in, reached, converted, stays, tally, recycled))


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


def _count_handoff(tally: HandoffTally, h: FunnelHandoff, source_of: dict[int, str | None],
                   as_of: datetime) -> None:
    """One handoff as it stood at `as_of`: left out if created after it, pending if resolved
    after it."""
    if h.created_at > as_of:
        return
    status, resolved_at = h.status, h.resolved_at
    if status != PENDING and resolved_at is not None and resolved_at > as_of:
        status, resolved_at = PENDING, None
    in_time = resolved_at is not None and resolved_at < h.sla_due_at
    tally.count(status, h.outcome_reason, source_of.get(h.lead_id),
                overdue=int(h.sla_due_at <= as_of), in_time=int(in_time))
