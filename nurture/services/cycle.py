"""The daily nurture cycle: plan then send, chunk by chunk, under a run lease.

`plan_chunk` (`nurture.services.planning`) scores, segments and routes a chunk and writes
the decisions; `send_chunk` (`nurture.services.sending`) settles what stopped runs left
behind, then claims, renders, sends and records the chunk's due touches. `run_chunks` is the
one chunk loop: the Prefect flow (`nurture.flows.daily_cycle`) hands it its tasks, and
`run_cycle` — the cycle without Prefect (CLI, simulations, tests) — calls the services
directly. The store and the transport come in through the ports (`nurture.services.ports`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Protocol

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


def cycle_chunk(store: CycleStore, ctx: SendContext, lo: int, hi: int, as_of: datetime,
                default_tz: str, dry_run: bool = False, fence: Any = None) -> ChunkResult:
    """One chunk, planned then sent — the unit of work a concurrent worker runs. `fence`
    (the run's `Lease`, or a `RunFence` in a worker) is checked before anything is written;
    `send_chunk` checks it again before every claim and send."""
    if fence is not None:
        fence.check()
    part = plan_chunk(store, ctx.rules, lo, hi, as_of, default_tz, dry_run)
    part.merge(send_chunk(store, ctx, lo, hi, as_of, dry_run, fence))
    return part


class ChunkFuture(Protocol):
    """A submitted chunk task (a Prefect future, a `concurrent.futures.Future`)."""

    def result(self) -> ChunkResult: ...


def run_chunks_concurrent(ranges: list[Range], start: Callable[[int, int], ChunkFuture],
                          in_flight: int,
                          finish: Callable[[dict[int, Any], list[Range]], ChunkResult],
                          after_chunk: Callable[[], object] | None = None,
                          progress: Callable[[int, int], None] | None = None) -> ChunkResult:
    """Up to `in_flight` chunks submitted at once, each planned then sent by one task that
    `start` submits (to threads, Dask processes or machines); the runner works as many at
    once as it has workers, and submitting more than that keeps a next chunk waiting at
    each worker, so none idles while results are merged here. Results are merged here, in the
    caller's process, in submission order: `after_chunk` (the flow announces lead events)
    and `progress` run after each. The database claims keep two workers off one touch; a
    failed chunk stops further submissions, the running ones are waited for, then its
    error is raised. Held touches go to `finish` as in `run_chunks`."""
    total = ChunkResult()
    all_leads = sum(n for _, _, n in ranges)
    done = 0
    held_ranges: list[Range] = []
    errors: list[BaseException] = []
    todo: Iterator[Range] = iter(ranges)
    running: deque[tuple[Range, ChunkFuture]] = deque()

    def fill() -> None:
        while not errors and len(running) < max(1, in_flight):
            nxt = next(todo, None)
            if nxt is None:
                return
            running.append((nxt, start(nxt[0], nxt[1])))

    fill()
    while running:
        (lo, hi, n), future = running.popleft()
        try:
            part = future.result()
        except Exception as exc:  # noqa: BLE001 - raised once the running chunks are done
            errors.append(exc)
            continue
        if part.held:
            held_ranges.append((lo, hi, n))
        total.merge(part)
        if after_chunk is not None:
            after_chunk()
        done += n
        if progress is not None:
            progress(done, all_leads)
        fill()
    if errors:
        raise errors[0]
    return _finish_held(total, held_ranges, finish)


def _finish_held(total: ChunkResult, held_ranges: list[Range],
                 finish: Callable[[dict[int, Any], list[Range]], ChunkResult]) -> ChunkResult:
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
        store.wake_for_new_rules(ctx.rules.fingerprint)  # new rules: sleeping leads too
        deliverability_guard(store, as_of)
    total = run_chunks(
        store.cycle_ranges(as_of, chunk_size),
        plan=lambda lo, hi: plan_chunk(store, ctx.rules, lo, hi, as_of, default_tz, dry_run),
        send=lambda lo, hi: send_chunk(store, ctx, lo, hi, as_of, dry_run, lease),
        finish=lambda held, ranges: finish_held(store, ctx, as_of, lease, held, ranges,
                                                notify),
        progress=progress)
    if not dry_run:  # before anything reads what the cycle wrote (the results reports)
        store.refresh_statistics()
    return summarise(total, as_of, dry_run)


__all__ = ["DEFAULT_SEND_BATCH", "NO_CAMPAIGN", "STALE_ROUNDS", "CampaignStats", "ChunkResult",
           "RunIncomplete", "SendContext", "SendPhaseStopped", "cycle_chunk", "finish_held",
           "plan_chunk", "run_chunks", "run_chunks_concurrent", "run_cycle", "send_chunk",
           "summarise"]
