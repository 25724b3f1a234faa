"""The daily nurture cycle as service functions over one chunk of leads.

`plan_chunk` scores, segments and routes a chunk and writes the decisions (compare-and-set
on each lead's version: a decision made on a stale snapshot is dropped and made again);
`send_chunk` settles what stopped runs left behind, then claims the chunk's due touches a
transport batch at a time, renders, sends and records each batch's outcomes before the next
(so a kill -9 leaves at most one batch in doubt). Prefect tasks in `flows/` are thin wrappers
over these, and `run_cycle` runs the same steps without Prefect (benchmarks, tests).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nurture.adapters.delivery.base import Delivery, Transport, TransportAuthError
from nurture.core.domain import (
    FAILED,
    IN_DOUBT,
    NURTURING,
    PLANNED,
    SENT,
    Decision,
    LeadEvent,
    LeadSnapshot,
)
from nurture.core.evaluation import evaluate, lead_facts
from nurture.core.ledger import (
    RetryPolicy,
    TouchResult,
    decide_failure,
    decide_give_back,
    decide_in_doubt,
    decide_sent,
)
from nurture.core.messages import Message, build_message
from nurture.core.rendering import Renderer, RenderError
from nurture.core.rules import Rules
from nurture.core.selection import choose_campaign
from nurture.core.unsubscribe import make_token, unsubscribe_url
from nurture.services.deliverability import guard as deliverability_guard
from nurture.store.pauses import CampaignStatus

NO_CAMPAIGN = "(no campaign)"
DEFAULT_SEND_BATCH = 200
STALE_ROUNDS = 4  # a lead that keeps changing under us is left to the next run


class SendPhaseStopped(Exception):
    """The transport refused our credentials; unsent touches stay planned."""


class RunIncomplete(Exception):
    """The run could not finish its work (touches still held by another live run)."""


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
    retrying: int = 0
    in_doubt: int = 0

    def add(self, other: CampaignStats) -> None:
        self.scored += other.scored
        self.by_stage.update(other.by_stage)
        self.due += other.due
        self.sent += other.sent
        self.failed += other.failed
        self.skipped.update(other.skipped)
        self.mqls += other.mqls
        self.recycled += other.recycled
        self.retrying += other.retrying
        self.in_doubt += other.in_doubt

    def as_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "by_buying_stage": dict(sorted(self.by_stage.items())),
                "due": self.due, "sent": self.sent, "failed": self.failed,
                "skipped": dict(sorted(self.skipped.items())), "mqls": self.mqls,
                "recycled": self.recycled, "retrying": self.retrying,
                "in_doubt": self.in_doubt}


@dataclass
class ChunkResult:
    campaigns: dict[str, CampaignStats] = field(default_factory=lambda: defaultdict(CampaignStats))
    events: list[LeadEvent] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    ledger: Counter = field(default_factory=Counter)  # retrying, in_doubt, taken_over, ...
    held: dict[int, Any] = field(default_factory=dict)  # live runs holding our touches

    def merge(self, other: ChunkResult) -> None:
        for name, stats in other.campaigns.items():
            self.campaigns[name].add(stats)
        self.events.extend(other.events)
        for k, v in other.seconds.items():
            self.seconds[k] += v
        self.ledger.update(other.ledger)
        self.held.update(other.held)


_EVENT_KINDS = {"mql": "mql", "recycled": "recycled", "disqualified": "disqualified"}


def _lead_events(d: Decision, lead: LeadSnapshot, rules: Rules, as_of: datetime
                 ) -> list[LeadEvent | None]:
    """One entry per transition of the decision: the event to announce, or None."""
    out: list[LeadEvent | None] = []
    for tr in d.transitions:
        kind = _EVENT_KINDS.get(tr.to_stage)
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
        if tr.to_stage == "mql":
            stats.mqls += 1
        elif tr.to_stage == "recycled":
            stats.recycled += 1


def plan_chunk(store, rules: Rules, lo: int, hi: int, as_of: datetime, default_tz: str,
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
    paused = CampaignStatus(store.engine).paused()  # nothing is planned for these
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


@dataclass
class SendContext:
    """What the send phase needs besides the store: built once per run by the wiring."""

    rules: Rules
    renderer: Renderer
    transport: Transport
    secret: str
    public_url: str
    schedule_ahead: timedelta = timedelta(hours=72)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # a run is taken over once its heartbeat stopped this long
    lapse: timedelta = timedelta(seconds=60)
    # in-doubt touches with no provider event this long are sent again (None: never —
    # without the signed webhook nothing would settle them; a person decides)
    in_doubt_settle: timedelta | None = None
    batch_size: int = DEFAULT_SEND_BATCH
    heartbeat: float = 10.0


def _render(ctx: SendContext, tc, as_of: datetime) -> Message | TouchResult:
    """A claimed touch as a message, or the failure to record."""
    compiled = ctx.rules.campaign(tc.campaign)
    found = compiled.campaign.step(tc.step) if compiled else None
    if found is None:
        return decide_failure(tc.touch_id, tc.attempt, f"step {tc.campaign}/{tc.step} is no "
                              "longer in the campaign config", False, ctx.retry, as_of)
    track, step = found
    token = make_token(ctx.secret, tc.email, tc.campaign, tc.touch_id)
    url = unsubscribe_url(ctx.public_url, token)
    try:
        rendered = ctx.renderer.render(compiled.campaign, track, step, tc.variant, tc.fields,
                                       url)
    except RenderError as exc:
        # the template may be fixed: retried by later runs, up to the attempt limit
        return decide_failure(tc.touch_id, tc.attempt, str(exc), True, ctx.retry, as_of)
    return build_message(tc.touch_id, tc.fields, compiled.campaign.sender, rendered, url,
                         max(tc.send_at, as_of), tc.campaign, tc.step, tc.variant)


def _delivered(ctx: SendContext, m: Message, dl: Delivery, attempt: int, as_of: datetime
               ) -> TouchResult:
    name = ctx.transport.name
    if dl.ok:
        return decide_sent(dl.touch_id, m.send_at, dl.message_id, dl.batch_id, m.subject, name)
    if dl.unknown:
        return decide_in_doubt(dl.touch_id, dl.error or "outcome unknown", m.subject, name,
                               dl.batch_id)
    return decide_failure(dl.touch_id, attempt, dl.error or "failed", dl.retryable, ctx.retry,
                          as_of, m.subject, name)


def _tally(result: ChunkResult, campaign: str, r: TouchResult) -> None:
    stats = result.campaigns[campaign]
    if r.status == SENT:
        stats.sent += 1
    elif r.status == IN_DOUBT:
        stats.in_doubt += 1
    elif r.status == FAILED:
        stats.failed += 1
    elif r.status == PLANNED and not r.give_back_attempt:
        stats.retrying += 1


def send_chunk(store, ctx: SendContext, lo: int, hi: int, as_of: datetime,
               dry_run: bool = False, lease=None) -> ChunkResult:
    """Settle what stopped runs left, then claim, render, send and record the due touches
    of leads in [lo, hi], one transport batch at a time, under `lease` (the run's fence)."""
    result = ChunkResult()
    if dry_run:
        return result
    if lease is None:  # a caller without a run of its own: this chunk is one
        from nurture.services.runs import Lease

        with Lease(store.ledger.runs, "send", as_of, ctx.heartbeat,
                   ctx.lapse.total_seconds()) as own:
            return send_chunk(store, ctx, lo, hi, as_of, dry_run, own)
    ledger = store.ledger
    t0 = time.perf_counter()
    tk = ledger.take_over(lo, hi, ctx.lapse, ctx.transport.reconcile, ctx.transport.name,
                          lease.run_id)
    result.ledger["taken_over"] += tk.settled
    if tk.touches_held:
        result.held.update(tk.owners_alive or {})
        result.ledger["held_by_live_runs"] += tk.touches_held
    if ctx.in_doubt_settle is not None:
        result.ledger["in_doubt_resent"] += ledger.release_in_doubt(
            lo, hi, datetime.now(UTC) - ctx.in_doubt_settle)
    claim = render = send = 0.0
    t1 = time.perf_counter()
    claim += t1 - t0
    while True:
        lease.check()
        t1 = time.perf_counter()
        claimed = ledger.claim(lo, hi, as_of + ctx.schedule_ahead, as_of, lease.run_id,
                               ctx.batch_size)
        t2 = time.perf_counter()
        claim += t2 - t1
        if not claimed:
            break
        results: list[TouchResult] = []
        messages: list[Message] = []
        by_id = {tc.touch_id: tc for tc in claimed}
        for tc in claimed:
            out = _render(ctx, tc, as_of)
            (messages if isinstance(out, Message) else results).append(out)
        t3 = time.perf_counter()
        render += t3 - t2
        lease.check()  # last look at the fence before anything leaves
        try:
            deliveries = ctx.transport.send_many(messages) if messages else []
        except TransportAuthError as exc:
            msgs = {m.touch_id: m for m in messages}
            for dl in exc.deliveries:  # went out (or may have) before the key was refused
                results.append(_delivered(ctx, msgs[dl.touch_id], dl,
                                          by_id[dl.touch_id].attempt, as_of))
            done = {r.touch_id for r in results}
            results += [decide_give_back(m.touch_id) for m in messages
                        if m.touch_id not in done]
            ledger.record(results, lease.run_id)
            raise SendPhaseStopped(str(exc)) from exc
        msgs = {m.touch_id: m for m in messages}
        results += [_delivered(ctx, msgs[dl.touch_id], dl, by_id[dl.touch_id].attempt, as_of)
                    for dl in deliveries]
        refused = ledger.record(results, lease.run_id)
        send += time.perf_counter() - t3
        if refused:
            result.ledger["results_refused"] += refused
            lease.check()
        for r in results:
            _tally(result, by_id[r.touch_id].campaign, r)
    result.seconds.update(claim=claim, render=render, send=send)
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
        "touches_retrying": total.retrying,
        "touches_in_doubt": total.in_doubt,
        "ledger": dict(sorted(result.ledger.items())),
        "campaigns": campaigns,
        "seconds": {k: round(v, 3) for k, v in sorted(result.seconds.items())},
    }


def finish_held(store, ctx: SendContext, as_of: datetime, lease, held: dict[int, Any],
                ranges: list[tuple[int, int, int]],
                notify: Callable[[str], None] | None = None,
                max_wait: float = 300.0) -> ChunkResult:
    """Touches of this run's leads still held by other runs: wait until their owners finish
    them or stop beating (then take them over and send what is left), telling the operator
    what it waits for. A run never reports done while work it was due to do is held."""
    out = ChunkResult()
    deadline = time.monotonic() + max_wait
    pending = list(ranges)
    while held and pending:
        if time.monotonic() > deadline:
            who = "; ".join(r.describe(datetime.now(UTC)) for r in held.values())
            raise RunIncomplete(f"touches of this cycle are still held by {who} after "
                                f"{max_wait:.0f} s; that run sends them, or run the cycle "
                                "again once it stopped")
        if notify:
            now = datetime.now(UTC)
            notify("waiting for " + "; ".join(r.describe(now) for r in held.values())
                   + f": it finishes its touches, or they are taken over once its heartbeat "
                   f"has been silent for {ctx.lapse.total_seconds():.0f} s")
        time.sleep(min(2.0, max(0.2, ctx.lapse.total_seconds() / 10)))
        held, still = {}, []
        for lo, hi, n in pending:
            part = send_chunk(store, ctx, lo, hi, as_of, lease=lease)
            out.merge(part)
            if part.held:
                held.update(part.held)
                still.append((lo, hi, n))
        pending = still
    out.held = {}
    return out


def run_cycle(store, ctx: SendContext, as_of: datetime, default_tz: str, chunk_size: int,
              dry_run: bool = False,
              progress: Callable[[int, int], None] | None = None,
              lease=None, notify: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole cycle without Prefect: plan then send, chunk by chunk, under a run lease
    (registered in the store; pass one to share it)."""
    from nurture.services.runs import Lease

    if lease is None and not dry_run:
        with Lease(store.ledger.runs, "daily-cycle", as_of, ctx.heartbeat,
                   ctx.lapse.total_seconds()) as own:
            return run_cycle(store, ctx, as_of, default_tz, chunk_size, dry_run, progress,
                             own, notify)
    total = ChunkResult()
    if not dry_run:  # pause campaigns over the spam/bounce limits before planning
        deliverability_guard(store.engine, as_of)
    ranges = store.cycle_ranges(as_of, chunk_size)
    done = 0
    held_ranges = []
    for lo, hi, n in ranges:
        total.merge(plan_chunk(store, ctx.rules, lo, hi, as_of, default_tz, dry_run))
        part = send_chunk(store, ctx, lo, hi, as_of, dry_run, lease)
        if part.held:
            held_ranges.append((lo, hi, n))
        total.merge(part)
        done += n
        if progress:
            progress(done, sum(r[2] for r in ranges))
    if total.held:
        total.merge(finish_held(store, ctx, as_of, lease, total.held, held_ranges, notify))
        total.held = {}
    return summarise(total, as_of, dry_run)
