"""Sending a chunk: settle what stopped runs left, then claim, render, send and record the
chunk's due touches one transport batch at a time (a kill -9 leaves at most one batch in
doubt). Every ledger write is a compare-and-set under the run's lease (`SendLedger`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from nurture.core.domain import FAILED, IN_DOUBT, PLANNED, SENT
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
from nurture.core.unsubscribe import make_token, unsubscribe_url
from nurture.services.cycle_result import ChunkResult
from nurture.services.ports import (
    CycleStore,
    Delivery,
    OutgoingTouch,
    SendLedger,
    Transport,
    TransportAuthError,
)
from nurture.services.runs import Lease

DEFAULT_SEND_BATCH = 200


class SendPhaseStopped(Exception):
    """The transport refused our credentials; unsent touches stay planned."""


class RunIncomplete(Exception):
    """The run could not finish its work (touches still held by another live run)."""


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


def _render(ctx: SendContext, tc: OutgoingTouch, as_of: datetime) -> Message | TouchResult:
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


def send_chunk(store: CycleStore, ctx: SendContext, lo: int, hi: int, as_of: datetime,
               dry_run: bool = False, lease: Lease | None = None) -> ChunkResult:
    """Settle what stopped runs left, then claim, render, send and record the due touches
    of leads in [lo, hi], one transport batch at a time, under `lease` (the run's fence)."""
    result = ChunkResult()
    if dry_run:
        return result
    if lease is None:  # a caller without a run of its own: this chunk is one
        with Lease(store.ledger.runs, "send", as_of, ctx.heartbeat,
                   ctx.lapse.total_seconds()) as own:
            return send_chunk(store, ctx, lo, hi, as_of, dry_run, own)
    ledger = store.ledger
    t0 = time.perf_counter()
    _settle_stopped_runs(ledger, ctx, lo, hi, lease, result)
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
        t3, t4 = _send_batch(ledger, ctx, claimed, as_of, lease, result)
        render += t3 - t2
        send += t4 - t3
    result.seconds.update(claim=claim, render=render, send=send)
    return result


def _settle_stopped_runs(ledger: SendLedger, ctx: SendContext, lo: int, hi: int, lease: Lease,
                         result: ChunkResult) -> None:
    """Take over the chunk's touches left by runs that stopped beating (counting those still
    held by live ones), and release in-doubt touches past `ctx.in_doubt_settle`."""
    tk = ledger.take_over(lo, hi, ctx.lapse, ctx.transport.reconcile, ctx.transport.name,
                          lease.run_id)
    result.ledger["taken_over"] += tk.settled
    if tk.touches_held:
        result.held.update(tk.owners_alive or {})
        result.ledger["held_by_live_runs"] += tk.touches_held
    if ctx.in_doubt_settle is not None:
        result.ledger["in_doubt_resent"] += ledger.release_in_doubt(
            lo, hi, datetime.now(UTC) - ctx.in_doubt_settle)


def _send_batch(ledger: SendLedger, ctx: SendContext, claimed: list[OutgoingTouch],
                as_of: datetime, lease: Lease, result: ChunkResult) -> tuple[float, float]:
    """Render, send and record one claimed batch (checking the fence before anything
    leaves), and tally it into `result`. Returns the `perf_counter` times at which rendering
    and recording ended, for the phase timings."""
    results: list[TouchResult] = []
    messages: list[Message] = []
    by_id = {tc.touch_id: tc for tc in claimed}
    for tc in claimed:
        out = _render(ctx, tc, as_of)
        (messages if isinstance(out, Message) else results).append(out)
    rendered = time.perf_counter()
    lease.check()  # last look at the fence before anything leaves
    try:
        deliveries = ctx.transport.send_many(messages) if messages else []
    except TransportAuthError as exc:
        _record_and_stop(ledger, ctx, exc, messages, results, by_id, as_of, lease)
    msgs = {m.touch_id: m for m in messages}
    results += [_delivered(ctx, msgs[dl.touch_id], dl, by_id[dl.touch_id].attempt, as_of)
                for dl in deliveries]
    refused = ledger.record(results, lease.run_id)
    recorded = time.perf_counter()
    if refused:
        result.ledger["results_refused"] += refused
        lease.check()
    for r in results:
        _tally(result, by_id[r.touch_id].campaign, r)
    return rendered, recorded


def _record_and_stop(ledger: SendLedger, ctx: SendContext, exc: TransportAuthError,
                     messages: list[Message], results: list[TouchResult],
                     by_id: dict[int, OutgoingTouch], as_of: datetime, lease: Lease) -> NoReturn:
    """The transport refused our key mid-batch: record what went out (or may have) before
    that, give the rest of the batch back to `planned`, and stop the send phase."""
    msgs = {m.touch_id: m for m in messages}
    for dl in exc.deliveries:  # went out (or may have) before the key was refused
        results.append(_delivered(ctx, msgs[dl.touch_id], dl,
                                  by_id[dl.touch_id].attempt, as_of))
    done = {r.touch_id for r in results}
    results += [decide_give_back(m.touch_id) for m in messages
                if m.touch_id not in done]
    ledger.record(results, lease.run_id)
    raise SendPhaseStopped(str(exc)) from exc


def finish_held(store: CycleStore, ctx: SendContext, as_of: datetime, lease: Lease,
                held: dict[int, Any],
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
