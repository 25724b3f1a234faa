"""Chunks at once (`run_chunks_concurrent`) and a worker's view of the run fence
(`RunFence`, read from the run's row): the parts of scale-out that need no Prefect."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from nurture.services.cycle import ChunkResult, run_chunks_concurrent
from nurture.services.runs import RunFence, RunFenced


def test_a_worker_fence_follows_the_run_row(migrated_engine):
    from nurture.store.runs import RunStore

    runs = RunStore(migrated_engine)
    run_id = runs.register("daily-cycle")
    fence = RunFence(runs, run_id, 60)
    fence.check()  # running, fresh heartbeat: fine
    # the flow process died (no heartbeat for 3/4 of the lapse): stop before a takeover
    threading.Event().wait(0.05)
    with pytest.raises(RunFenced, match="heartbeat has been silent"):
        RunFence(runs, run_id, 0.01).check()
    assert runs.beat(run_id)
    runs.finish(run_id)  # the flow ended (or a newer run took over): workers stop
    with pytest.raises(RunFenced, match=f"run {run_id} is no longer running"):
        fence.check()


def _ranges(n: int) -> list[tuple[int, int, int]]:
    return [(i * 10 + 1, i * 10 + 10, 10) for i in range(n)]


def test_chunks_run_at_most_workers_at_once_and_merge_in_order():
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    seen: list[int] = []
    progress: list[int] = []

    def step(lo: int, hi: int) -> ChunkResult:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        threading.Event().wait(0.02)
        with lock:
            state["now"] -= 1
        part = ChunkResult()
        part.ledger["sent"] = hi - lo + 1
        return part

    with ThreadPoolExecutor(max_workers=8) as pool:
        total = run_chunks_concurrent(
            _ranges(7), lambda lo, hi: (seen.append(lo), pool.submit(step, lo, hi))[1], 3,
            finish=lambda held, ranges: ChunkResult(),
            progress=lambda done, _all: progress.append(done))
    assert state["peak"] <= 3 and state["peak"] >= 2
    assert seen == [r[0] for r in _ranges(7)]
    assert progress == [10 * (i + 1) for i in range(7)]
    assert total.ledger["sent"] == 70


def test_a_failed_chunk_stops_new_submissions_and_is_raised_after_the_running_ones():
    done: list[int] = []

    def step(lo: int, hi: int) -> ChunkResult:
        if lo == 11:
            raise RunFenced("taken over")
        threading.Event().wait(0.05)
        done.append(lo)
        return ChunkResult()

    started: list[int] = []
    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(RunFenced):
        run_chunks_concurrent(
            _ranges(6), lambda lo, hi: (started.append(lo), pool.submit(step, lo, hi))[1], 2,
            finish=lambda held, ranges: ChunkResult())
    assert 1 in done  # the chunk running beside the failed one was waited for
    assert len(started) <= 3  # nothing new after the failure was seen
