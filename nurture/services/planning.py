"""Planning a chunk: score, segment and route the due leads and write the decisions.

Each lead's write is a compare-and-set on the version it was loaded at (`CycleStore`); a
decision made on a stale snapshot is dropped and made again.
"""

from __future__ import annotations

import time
from datetime import datetime

from nurture.core.domain import MQL, NURTURING, RECYCLED, Decision, LeadEvent, LeadSnapshot
from nurture.core.evaluation import evaluate, lead_facts
from nurture.core.rules import Rules
from nurture.core.selection import choose_campaign
from nurture.services.cycle_result import NO_CAMPAIGN, ChunkResult
from nurture.services.ports import CycleStore

STALE_ROUNDS = 4  # a lead that keeps changing under us is left to the next run


# lead stage -> the `nurture.lead.<kind>` event announced for it (docs/prefect-events.md)
EVENT_KINDS = {"mql": "mql", "recycled": "recycled", "disqualified": "disqualified"}


def _lead_events(d: Decision, lead: LeadSnapshot, rules: Rules, as_of: datetime
                 ) -> list[LeadEvent | None]:
    """One entry per transition of the decision: the event to announce, or None."""
    out: list[LeadEvent | None] = []
    for tr in d.transitions:
        kind = EVENT_KINDS.get(tr.to_stage)
        if kind is None:
            out.append(None)
            continue
        if kind == "recycled" and tr.rule == "routing.mql.sla_hours":
            kind = "sla_expired"  # announced as such; counted as a recycle
        breakdown = None
        campaign = d.campaign or lead.campaign
        if kind == "mql":  # what sales sees first: why this lead, in points
            facts = lead_facts(lead, rules, as_of)
            breakdown = {
                "fit": [{"rule": r, "points": p} for r, p in rules.scores.fit_breakdown(facts)],
                "engagement": {k: round(v, 1) for k, v in rules.scores.engagement_by_type(
                    facts.activities, as_of).items()}}
            if campaign is None:  # a new lead that went straight to sales: whose audience
                home = choose_campaign(rules.campaigns, NURTURING, facts)
                campaign = home.campaign.name if home else None
        out.append(LeadEvent(kind, d.lead_id, lead.email, campaign, tr.reason, tr.rule,
                             d.score, d.grade, breakdown=breakdown,
                             recycle_count=d.recycle_count))
    return out


def _count(result: ChunkResult, d: Decision) -> None:
    stats = result.campaigns[d.campaign or NO_CAMPAIGN]
    stats.scored += 1
    stats.by_stage[d.buying_stage] += 1
    if d.touch is not None:
        stats.due += 1
    elif d.skip_reason:
        stats.skipped[d.skip_reason] += 1
    for tr in d.transitions:
        if tr.to_stage == MQL:
            stats.mqls += 1
        elif tr.to_stage == RECYCLED:
            stats.recycled += 1


def plan_chunk(store: CycleStore, rules: Rules, lo: int, hi: int, as_of: datetime, default_tz: str,
               dry_run: bool = False, engaged_only: bool = False) -> ChunkResult:
    """Score, segment and route the due leads in [lo, hi]; write decisions, lead events and
    planned touches (unless `dry_run`).

    Each lead's write is a compare-and-set on the version it was loaded at: when instant
    routing, sales feedback, the webhook or an import changed the lead meanwhile, that
    decision is dropped, the lead loaded again and decided again (a few rounds; a lead that
    keeps changing is left for the next run, which still sees it).

    `engaged_only` is instant routing (`process_engagement`): only marketing leads with new
    activity are looked at, and only hand-raisers that now meet the MQL rule are written —
    everything else (content, recycling) waits for the daily cycle, which still sees them."""
    points = {k: v[0] for k, v in rules.scores.points.items()}
    result = ChunkResult()
    actor = "system:instant-routing" if engaged_only else "system:daily-cycle"
    ids: list[int] | None = None
    load = decide = write = 0.0
    paused = store.pauses.paused()  # nothing is planned for these
    for _round in range(STALE_ROUNDS):
        t1 = time.perf_counter()
        leads = store.load_snapshots(lo, hi, as_of, rules.horizon_days, points, default_tz,
                                     engaged_only=engaged_only, ids=ids)
        t2 = time.perf_counter()
        decisions = [evaluate(lead, rules, as_of, paused) for lead in leads]
        touch_only: list[tuple[int, int]] = []
        if engaged_only:
            touch_only = [(d.lead_id, d.version) for d in decisions if d.handoff is None]
            decisions = [d for d in decisions if d.handoff is not None]
        by_id = {lead.id: lead for lead in leads}
        events = {d.lead_id: _lead_events(d, by_id[d.lead_id], rules, as_of)
                  for d in decisions if d.transitions}
        t3 = time.perf_counter()
        load += t2 - t1
        decide += t3 - t2
        if dry_run:
            for d in decisions:
                _count(result, d)
            result.events += [e for evs in events.values() for e in evs if e is not None]
            break
        applied = store.apply_decisions(decisions, as_of, rules.mql_owners, actor, events,
                                        touch_only)
        write += time.perf_counter() - t3
        for d in decisions:
            if d.lead_id not in applied.stale:
                _count(result, d)
        result.events += applied.events
        result.ledger["stale_decisions"] += len(applied.stale)
        if not applied.stale:
            break
        ids = sorted(applied.stale)
    result.seconds.update(load=load, evaluate=decide, write=write)
    return result
