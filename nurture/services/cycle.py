"""The daily nurture cycle: plan then send, chunk by chunk, under a run lease.

`plan_chunk` (`nurture.services.planning`) scores, segments and routes a chunk and writes
the decisions; `send_chunk` (`nurture.services.sending`) settles what stopped runs left
behind, then claims, renders, sends and records the chunk's due touches. `run_chunks` is the
one chunk loop: the Prefect flow (`nurture.flows.daily_cycle`) hands it its tasks, and
`run_cycle` — the cycle without Prefect (CLI, simulations, tests) — calls the services
directly. The store and the transport come in through the ports (`nurture.services.ports`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from nurture.services.cycle_result import NO_CAMPAIGN, CampaignStats, ChunkResult, summarise
from nurture.services.deliverability import guard as deliverability_guard
from nurture.services.planning import STALE_ROUNDS, plan_chunk
from nurture.services.ports import CycleStore
from nurture.services.runs import Lease
from nurture.services.sending import (
    DEFAULT_SEND_BATCH,
    RunIncomplete,
    SendContext,
    SendPhaseStopped,
    finish_held,
    send_chunk,
)

Range = tuple[int, int, int]  # first lead id, last lead id, number of leads
ChunkStep = Callable[[int, int], ChunkResult]


def run_chunks(ranges: list[Range], plan: ChunkStep, send: ChunkStep,
               finish: Callable[[dict[int, Any], list[Range]], ChunkResult],
               after_plan: Callable[[], object] | None = None,
               progress: Callable[[int, int], None] | None = None) -> ChunkResult:
    """Plan then send each chunk in order (a chunk's new touches go out before the next
    chunk is planned); `after_plan` runs after each plan (the flow announces lead events);
    `progress(done, total)` after each chunk. Touches other live runs hold are handed to
    `finish(held, held_ranges)`, which waits for them or takes them over: a run never
    reports done while work it was due to do is held."""
    total = ChunkResult()
    all_leads = sum(n for _, _, n in ranges)
    done = 0
    held_ranges: list[Range] = []
    for lo, hi, n in ranges:
        total.merge(plan(lo, hi))
        if after_plan is not None:
            after_plan()
        part = send(lo, hi)
        if part.held:
            held_ranges.append((lo, hi, n))
        total.merge(part)
        done += n
        if progress is not None:
            progress(done, all_leads)
    if total.held:
        total.merge(finish(total.held, held_ranges))
        total.held = {}
    return total


def run_cycle(store: CycleStore, ctx: SendContext, as_of: datetime, default_tz: str,
              chunk_size: int, dry_run: bool = False,
              progress: Callable[[int, int], None] | None = None,
              lease: Lease | None = None, notify: Callable[[str], None] | None = None
              ) -> dict[str, Any]:
    """The whole cycle without Prefect: plan then send, chunk by chunk, under a run lease
    (registered in the store; pass one to share it)."""
    if lease is None and not dry_run:
        with Lease(store.ledger.runs, "daily-cycle", as_of, ctx.heartbeat,
                   ctx.lapse.total_seconds()) as own:
            return run_cycle(store, ctx, as_of, default_tz, chunk_size, dry_run, progress,
                             own, notify)
    if not dry_run:  # pause campaigns over the spam/bounce limits before planning
        deliverability_guard(store, as_of)
    total = run_chunks(
        store.cycle_ranges(as_of, chunk_size),
        plan=lambda lo, hi: plan_chunk(store, ctx.rules, lo, hi, as_of, default_tz, dry_run),
        send=lambda lo, hi: send_chunk(store, ctx, lo, hi, as_of, dry_run, lease),
        finish=lambda held, ranges: finish_held(store, ctx, as_of, lease, held, ranges,
                                                notify),
        progress=progress)
    return summarise(total, as_of, dry_run)


__all__ = ["DEFAULT_SEND_BATCH", "NO_CAMPAIGN", "STALE_ROUNDS", "CampaignStats", "ChunkResult",
           "RunIncomplete", "SendContext", "SendPhaseStopped", "finish_held", "plan_chunk",
           "run_chunks", "run_cycle", "send_chunk", "summarise"]
