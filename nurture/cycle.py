"""The daily nurture cycle as service functions over one chunk of leads.

`plan_chunk` scores, segments and routes a chunk and writes planned touches to the ledger;
`send_chunk` claims the chunk's due touches, renders and sends them, and records each
outcome. Prefect tasks in `flows/` are one-line wrappers over these, and `run_cycle` runs
the same steps without Prefect (benchmarks, tests).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nurture.delivery.base import Transport, TransportAuthError
from nurture.domain import PLANNED, SENT, UNKNOWN, Decision
from nurture.evaluation import evaluate, lead_facts
from nurture.messages import Message, build_message
from nurture.rendering import Renderer, RenderError
from nurture.rules import Rules
from nurture.unsubscribe import make_token, unsubscribe_url

NO_CAMPAIGN = "(no campaign)"
SEND_BATCH = 500
STALE_CLAIM = timedelta(minutes=15)


class SendPhaseStopped(Exception):
    """The transport refused our credentials; unsent touches stay planned."""


@dataclass
class CampaignStats:
    scored: int = 0
    by_stage: Counter = field(default_factory=Counter)
    due: int = 0
    sent: int = 0
    failed: int = 0
    skipped: Counter = field(default_factory=Counter)
    mqls: int = 0
    recycled: int = 0

    def add(self, other: CampaignStats) -> None:
        self.scored += other.scored
        self.by_stage.update(other.by_stage)
        self.due += other.due
        self.sent += other.sent
        self.failed += other.failed
        self.skipped.update(other.skipped)
        self.mqls += other.mqls
        self.recycled += other.recycled

    def as_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "by_buying_stage": dict(sorted(self.by_stage.items())),
                "due": self.due, "sent": self.sent, "failed": self.failed,
                "skipped": dict(sorted(self.skipped.items())), "mqls": self.mqls,
                "recycled": self.recycled}


@dataclass
class LeadEvent:
    """An MQL or recycle to announce (Prefect event, webhooks)."""

    kind: str  # "mql" | "recycled" | "sla_expired" | "disqualified"
    lead_id: int
    email: str
    campaign: str | None
    reason: str
    rule: str | None
    score: float
    grade: str
    owner: str | None = None
    breakdown: dict[str, Any] | None = None
    recycle_count: int = 0


@dataclass
class ChunkResult:
    campaigns: dict[str, CampaignStats] = field(default_factory=lambda: defaultdict(CampaignStats))
    events: list[LeadEvent] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def merge(self, other: ChunkResult) -> None:
        for name, stats in other.campaigns.items():
            self.campaigns[name].add(stats)
        self.events.extend(other.events)
        for k, v in other.seconds.items():
            self.seconds[k] += v


def plan_chunk(store, rules: Rules, lo: int, hi: int, as_of: datetime, default_tz: str,
               dry_run: bool = False, engaged_only: bool = False) -> ChunkResult:
    """Score, segment and route the due leads in [lo, hi]; write decisions and planned
    touches (unless `dry_run`).

    `engaged_only` is instant routing (`process_engagement`): only marketing leads with new
    activity are looked at, and only hand-raisers that now meet the MQL rule are written —
    everything else (content, recycling) waits for the daily cycle, which still sees them."""
    import time

    t0 = time.perf_counter()
    points = {k: v[0] for k, v in rules.scores.points.items()}
    leads = store.load_snapshots(lo, hi, as_of, rules.horizon_days, points, default_tz,
                                 engaged_only=engaged_only)
    t1 = time.perf_counter()
    decisions: list[Decision] = [evaluate(lead, rules, as_of) for lead in leads]
    if engaged_only:
        decisions = [d for d in decisions if d.handoff is not None]
    t2 = time.perf_counter()
    result = ChunkResult()
    by_id = {lead.id: lead for lead in leads}
    for d in decisions:
        stats = result.campaigns[d.campaign or NO_CAMPAIGN]
        stats.scored += 1
        stats.by_stage[d.buying_stage] += 1
        if d.touch is not None:
            stats.due += 1
        elif d.skip_reason:
            stats.skipped[d.skip_reason] += 1
        for tr in d.transitions:
            kind = {"mql": "mql", "recycled": "recycled", "disqualified": "disqualified"}.get(
                tr.to_stage)
            if kind is None:
                continue
            if kind == "mql":
                stats.mqls += 1
            elif kind == "recycled":
                stats.recycled += 1
                if tr.rule == "routing.mql.sla_hours":
                    kind = "sla_expired"  # announced as such; counted as a recycle
            breakdown = None
            if kind == "mql":  # what sales sees first: why this lead, in points
                lead = by_id[d.lead_id]
                facts = lead_facts(lead, rules, as_of)
                breakdown = {
                    "fit": [{"rule": r, "points": p} for r, p in rules.scores.fit_breakdown(facts)],
                    "engagement": {k: round(v, 1) for k, v in rules.scores.engagement_by_type(
                        facts.activities, as_of).items()}}
            result.events.append(LeadEvent(kind, d.lead_id, by_id[d.lead_id].email, d.campaign,
                                           tr.reason, tr.rule, d.score, d.grade,
                                           breakdown=breakdown, recycle_count=d.recycle_count))
    if not dry_run and decisions:
        store.apply_decisions(decisions, as_of, rules.mql_owners,
                              "system:instant-routing" if engaged_only else
                              "system:daily-cycle")
        mql_ids = [e.lead_id for e in result.events if e.kind == "mql"]
        if mql_ids:
            owners = store.handoff_owners(mql_ids)
            for e in result.events:
                if e.kind == "mql":
                    e.owner = owners.get(e.lead_id)
    if engaged_only and not dry_run and leads:
        store.clear_activity_pending([lead.id for lead in leads])
    t3 = time.perf_counter()
    result.seconds.update(load=t1 - t0, evaluate=t2 - t1, write=t3 - t2)
    return result


@dataclass
class SendContext:
    """What the send phase needs besides the store: built once per run by the wiring."""

    rules: Rules
    renderer: Renderer
    transport: Transport
    secret: str
    public_url: str
    schedule_ahead: timedelta = timedelta(hours=72)


def _reconcile(store, ctx: SendContext, lo: int, hi: int) -> None:
    """Settle touches a crashed run left `sending`: sent if the transport has them,
    planned again if it certainly does not, `unknown` otherwise — never blindly resent."""
    stale = store.stale_sending(lo, hi, datetime.now(UTC) - STALE_CLAIM)
    if not stale:
        return
    from lead_store.store import SendResult

    known = ctx.transport.reconcile(stale)
    now = datetime.now(UTC)
    results = []
    for tid in stale:
        if tid not in known:
            results.append(SendResult(tid, UNKNOWN, error="send outcome unknown after a crash; "
                                      "not resent"))
        elif known[tid] is None:
            results.append(SendResult(tid, PLANNED))
        else:
            results.append(SendResult(tid, SENT, sent_at=now, provider_message_id=known[tid],
                                      transport=ctx.transport.name))
    store.record_results(results)


def send_chunk(store, ctx: SendContext, lo: int, hi: int, as_of: datetime,
               dry_run: bool = False) -> ChunkResult:
    """Claim, render, send and record the due touches of leads in [lo, hi]."""
    import time

    from lead_store.store import SendResult

    result = ChunkResult()
    if dry_run:
        return result
    t0 = time.perf_counter()
    _reconcile(store, ctx, lo, hi)
    claimed = store.claim_touches(lo, hi, as_of + ctx.schedule_ahead)
    t1 = time.perf_counter()
    messages: list[Message] = []
    results: list[SendResult] = []
    campaign_of: dict[int, str] = {}
    for tc in claimed:
        campaign_of[tc.touch_id] = tc.campaign
        compiled = ctx.rules.campaign(tc.campaign)
        found = compiled.campaign.step(tc.step) if compiled else None
        if found is None:
            results.append(SendResult(tc.touch_id, "failed", error=f"step {tc.campaign}/"
                                      f"{tc.step} is no longer in the campaign config"))
            continue
        track, step = found
        token = make_token(ctx.secret, tc.email, tc.campaign, tc.touch_id)
        url = unsubscribe_url(ctx.public_url, token)
        try:
            rendered = ctx.renderer.render(compiled.campaign, track, step, tc.variant, tc.fields,
                                           url)
        except RenderError as exc:
            results.append(SendResult(tc.touch_id, "failed", error=str(exc)))
            continue
        send_at = max(tc.send_at, as_of)
        messages.append(build_message(tc.touch_id, tc.fields, compiled.campaign.sender, rendered,
                                      url, send_at, tc.campaign, tc.step, tc.variant))
    t2 = time.perf_counter()
    subjects = {m.touch_id: m for m in messages}
    try:
        for i in range(0, len(messages), SEND_BATCH):
            batch = messages[i:i + SEND_BATCH]
            for dl in ctx.transport.send_many(batch):
                m = subjects[dl.touch_id]
                if dl.ok:
                    results.append(SendResult(dl.touch_id, SENT, sent_at=m.send_at,
                                              provider_message_id=dl.message_id,
                                              subject=m.subject, transport=ctx.transport.name))
                elif dl.unknown:
                    results.append(SendResult(dl.touch_id, UNKNOWN, subject=m.subject,
                                              error=dl.error, transport=ctx.transport.name))
                else:
                    results.append(SendResult(dl.touch_id, "failed", subject=m.subject,
                                              error=dl.error, transport=ctx.transport.name))
    except TransportAuthError as exc:
        for dl in exc.deliveries:  # went out (or may have) before the key was refused
            m = subjects[dl.touch_id]
            results.append(SendResult(dl.touch_id, SENT if dl.ok else UNKNOWN,
                                      sent_at=m.send_at if dl.ok else None,
                                      provider_message_id=dl.message_id, subject=m.subject,
                                      error=dl.error, transport=ctx.transport.name))
        done = {r.touch_id for r in results}
        results.extend(SendResult(m.touch_id, PLANNED) for m in messages
                       if m.touch_id not in done)
        store.record_results(results)
        raise SendPhaseStopped(str(exc)) from exc
    store.record_results(results)
    t3 = time.perf_counter()
    for r in results:
        stats = result.campaigns[campaign_of[r.touch_id]]
        if r.status == SENT:
            stats.sent += 1
        elif r.status in ("failed", UNKNOWN):
            stats.failed += 1
    result.seconds.update(claim=t1 - t0, render=t2 - t1, send=t3 - t2)
    return result


def summarise(result: ChunkResult, as_of: datetime, dry_run: bool) -> dict[str, Any]:
    """The run summary as one JSON-ready object (the `cycle --json` output)."""
    campaigns = {name: stats.as_dict() for name, stats in sorted(result.campaigns.items())}
    skipped: Counter = Counter()
    for stats in result.campaigns.values():
        skipped.update(stats.skipped)
    total = CampaignStats()
    for stats in result.campaigns.values():
        total.add(stats)
    return {
        "as_of": as_of.isoformat(),
        "dry_run": dry_run,
        "leads_scored": total.scored,
        "touches_planned": total.due,
        "touches_sent": total.sent,
        "touches_failed": total.failed,
        "mqls": total.mqls,
        "recycled": total.recycled,
        "skipped": dict(sorted(skipped.items())),
        "by_buying_stage": dict(sorted(total.by_stage.items())),
        "campaigns": campaigns,
        "seconds": {k: round(v, 3) for k, v in sorted(result.seconds.items())},
    }


def run_cycle(store, ctx: SendContext, as_of: datetime, default_tz: str, chunk_size: int,
              dry_run: bool = False,
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The whole cycle without Prefect: plan then send, chunk by chunk."""
    total = ChunkResult()
    ranges = store.cycle_ranges(as_of, chunk_size)
    done = 0
    for lo, hi, n in ranges:
        total.merge(plan_chunk(store, ctx.rules, lo, hi, as_of, default_tz, dry_run))
        total.merge(send_chunk(store, ctx, lo, hi, as_of, dry_run))
        done += n
        if progress:
            progress(done, sum(r[2] for r in ranges))
    return summarise(total, as_of, dry_run)
