"""The daily nurture cycle as a Prefect flow: one task per chunk of leads, never per lead.

Thin by design: each task calls one engine service (`nurture.services.cycle.plan_chunk`,
`send_chunk`) on an id range. The flow adds what operators see in the Prefect UI: a unique
run name with the date and time, a progress artifact, a narrow headline table, a markdown
report and an event per MQL / recycle that automations can react to. A dry run writes its
artifacts under keys ending in `-dry-run`, so the live "latest" is never a dry run.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from nurture.flows.artifacts import publish_result_artifacts
from nurture.flows.common import LeadAnnouncer, dated_run_name, open_app, parse_as_of
from nurture.flows.scale import (
    ChunkPool,
    SettingsData,
    adopt,
    prefect_api_for_workers,
    runner_kind,
    worker_fence,
    worker_parts,
)
from nurture.services.cycle import (
    NO_CAMPAIGN,
    ChunkResult,
    cycle_chunk,
    finish_held,
    plan_chunk,
    run_chunks,
    run_chunks_concurrent,
    send_chunk,
    summarise,
)
from nurture.store.funnel_queries import funnel_report
from nurture.views.funnel import funnel_markdown
from nurture.views.summary import headline_rows, summary_markdown
from nurture.wiring import App, deliver_handoffs, deliverability_guard, retry_provider_events

SUMMARY_KEY = "nurture-cycle-summary"
REPORT_KEY = "nurture-cycle-report"
PROGRESS_KEY = "nurture-cycle-progress"
DRY = "-dry-run"


def _run_name() -> str:
    """`nurture-cycle-2026-11-23-0700-3f9a` (as_of in UTC, then a suffix of the run id);
    `…-0700-dry-run-3f9a` for a dry run."""
    params = flow_run.parameters or {}
    return dated_run_name("nurture-cycle", params.get("as_of"), bool(params.get("dry_run")))


def _sla_expired(summary: dict[str, Any], total: ChunkResult) -> None:
    """MQLs nobody accepted in time came back recycled: counted apart for the headline."""
    by_campaign: dict[str, int] = {}
    for e in total.events:
        if e.kind == "sla_expired":
            name = e.campaign if e.campaign in summary["campaigns"] else NO_CAMPAIGN
            by_campaign[name] = by_campaign.get(name, 0) + 1
    summary["sla_expired"] = sum(by_campaign.values())
    summary["sla_expired_by_campaign"] = by_campaign


@task(name="plan-chunk", cache_policy=NO_CACHE, task_run_name="plan leads {lo}-{hi}")
def plan_chunk_task(app: App, lo: int, hi: int, as_of: datetime, dry_run: bool) -> ChunkResult:
    """Score, segment, route and plan touches for leads with ids in [lo, hi]."""
    return plan_chunk(app.store, app.rules, lo, hi, as_of, app.settings.default_timezone,
                      dry_run)


@task(name="send-chunk", cache_policy=NO_CACHE, task_run_name="send touches {lo}-{hi}")
def send_chunk_task(app: App, ctx, lo: int, hi: int, as_of: datetime,
                    dry_run: bool, lease=None) -> ChunkResult:
    """Claim, render and send the due touches of leads with ids in [lo, hi]."""
    return send_chunk(app.store, ctx, lo, hi, as_of, dry_run, lease)


@task(name="cycle-chunk", cache_policy=NO_CACHE, task_run_name="plan and send leads {lo}-{hi}")
def cycle_chunk_task(data: SettingsData, lo: int, hi: int, as_of: datetime, dry_run: bool,
                     run_id: int | None, lapse_seconds: float) -> ChunkResult:
    """One chunk planned then sent, in a worker thread, Dask process or machine: it uses its
    process's own App (built once from `data`) and checks the run's fence in the database
    before each write or send; the lease's heartbeat stays in the flow's process."""
    app, ctx = worker_parts(data)
    return cycle_chunk(app.store, ctx, lo, hi, as_of, app.settings.default_timezone, dry_run,
                       worker_fence(app, run_id, lapse_seconds))


@task(name="funnel-report", cache_policy=NO_CACHE, task_run_name="funnel report")
def funnel_report_task(app: App, as_of: datetime) -> dict[str, Any]:
    """The marketing ↔ sales funnel after this cycle, as a markdown artifact (counted by the
    database: its cost and memory do not follow every lead into Python)."""
    report = funnel_report(app.engine, as_of)
    create_markdown_artifact(funnel_markdown(report), key="nurture-funnel",
                             description=f"Lead funnel as of {as_of.date()}")
    return report


@task(name="deliver-handoffs", cache_policy=NO_CACHE, retries=0,
      task_run_name="deliver handoffs to the CRM")
def deliver_handoffs_task(app: App) -> dict[str, int] | None:
    """Pending MQL handoffs to the CRM webhook (if configured); failures retry next run."""
    return deliver_handoffs(app)


class _TerminalProgress:
    """A rich progress bar on an interactive terminal; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.bar = None
        if sys.stderr.isatty() and total:
            self.bar = Progress("[bold]nurture cycle", BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("leads", total=total)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _run_chunks(app: App, lease, ranges, when: datetime, dry_run: bool, progress_id,
                total_leads: int, pool: ChunkPool | None, announce=None) -> ChunkResult:
    """The service's chunk loop with this flow's tasks: lead events are announced after each
    plan; touches other live runs hold are waited for (or taken over once their heartbeat
    stops), with the wait logged as a warning. With a `pool`, chunk tasks run at once on
    its task runner (threads or Dask), which is stopped as soon as they are done."""
    logger = get_run_logger()
    ctx = app.send_context()
    bar = _TerminalProgress(total_leads)

    def progress(done: int, _total: int) -> None:
        bar.update(done)
        update_progress_artifact(progress_id, 100.0 * done / max(total_leads, 1))

    def finish(held, held_ranges):
        return finish_held(app.store, ctx, when, lease, held, held_ranges,
                           notify=logger.warning, max_wait=app.settings.run_wait_seconds)

    try:
        if pool is not None:
            try:
                return _concurrently(app, ctx, lease, ranges, when, dry_run, pool, finish,
                                     announce, progress)
            finally:
                pool.stop_in_background()
        return run_chunks(
            ranges,
            plan=lambda lo, hi: plan_chunk_task(app, lo, hi, when, dry_run),
            send=lambda lo, hi: send_chunk_task(app, ctx, lo, hi, when, dry_run, lease),
            finish=finish, after_plan=announce, progress=progress)
    finally:
        bar.stop()
        ctx.transport.close()


def _concurrently(app: App, ctx, lease, ranges, when: datetime, dry_run: bool,
                  pool: ChunkPool, finish, announce, progress) -> ChunkResult:
    """Chunk tasks on the pool's task runner: Prefect's thread pool, or Dask."""
    runner = pool.runner()
    workers = pool.workers
    get_run_logger().info("%d chunk(s), up to %d at once on %s", len(ranges), workers,
                          type(runner).__name__)
    data = adopt(app, ctx)  # threads use the flow's own App; Dask processes build theirs
    run_id = None if dry_run else lease.run_id
    args = (when, dry_run, run_id, app.settings.run_lapse_seconds)
    names = ("data", "lo", "hi", "as_of", "dry_run", "run_id", "lapse_seconds")
    with prefect_api_for_workers(pool.kind):
        def start(lo: int, hi: int):
            return runner.submit(cycle_chunk_task, parameters=dict(
                zip(names, (data, lo, hi, *args), strict=True)))

        # a next chunk queued at every worker (Dask: its own queue; threads: the pool's)
        return run_chunks_concurrent(ranges, start, 2 * workers, finish, after_chunk=announce,
                                     progress=progress)


def _plan_and_send(app: App, ranges, when: datetime, dry_run: bool, progress_id,
                   total_leads: int, pool: ChunkPool | None) -> ChunkResult:
    """The chunks, under the run's lease unless a dry run (which writes nothing)."""
    if dry_run:
        total = _run_chunks(app, None, ranges, when, True, progress_id, total_leads, pool)
    else:
        with app.lease("daily-cycle", when) as lease:
            retry_provider_events(app)  # webhook events whose application failed, and more
            deliverability_guard(app.engine, when)  # pause campaigns over the limits first
            announcer = LeadAnnouncer(app, lease)
            announcer.announce()  # anything a stopped run recorded but never sent
            total = _run_chunks(app, lease, ranges, when, False, progress_id, total_leads,
                                pool, announcer.announce)
            announcer.announce()
            announcer.settle()
            app.store.refresh_statistics()  # before the results reports read the new rows
    if not ranges:
        update_progress_artifact(progress_id, 100.0)
    return total


def _after_sends(app: App, when: datetime, summary: dict[str, Any]) -> None:
    """CRM handoffs and the funnel and results reports: what the engine-only `run_cycle`
    does not do (their seconds, `after_sends`, let benchmarks/prefect_overhead.py set them
    apart)."""
    t0 = time.perf_counter()
    crm = deliver_handoffs_task(app)
    if crm is not None:
        summary["handoff_webhook"] = crm
    funnel_report_task(app, when)
    try:  # results are for people: a report that fails must not fail the day's sends
        publish_result_artifacts(app, when)
    except Exception as exc:  # noqa: BLE001
        get_run_logger().warning("results artifacts not published: %s: %s",
                                 type(exc).__name__, exc)
    summary["seconds"]["after_sends"] = round(time.perf_counter() - t0, 3)


@flow(name="daily-nurture-cycle", flow_run_name=_run_name, log_prints=True,
      validate_parameters=True)
def daily_nurture_cycle(as_of: str | None = None, dry_run: bool = False,
                        chunk_size: int | None = None,
                        campaigns_dir: str | None = None,
                        workers: int | None = None) -> dict[str, Any]:
    """Score every due lead, segment, route (MQL, SLA, recycle), plan and send touches.

    Args:
        as_of: ISO 8601 time the cycle runs "at", e.g. 2026-11-23T07:00:00Z. Empty: now.
            Simulations move it forward.
        dry_run: Decide and report, but write and send nothing. Its artifacts use keys
            ending in -dry-run and never replace the live run's.
        chunk_size: Leads per task. Empty: NURTURE_CHUNK_SIZE (5000).
        campaigns_dir: Directory with lifecycle.yaml and the campaigns. Empty:
            NURTURE_CAMPAIGNS_DIR (campaigns/).
        workers: Chunks worked on at once. Empty: NURTURE_WORKERS (1: one after another).
            Above 1: a local Dask cluster of that many processes on PostgreSQL, threads on
            SQLite, or the scheduler at NURTURE_DASK_ADDRESS (docs/scaling.md).
    """
    logger = get_run_logger()
    when = parse_as_of(as_of)
    app = open_app(campaigns_dir)
    size = chunk_size or app.settings.chunk_size
    workers = workers or app.settings.workers
    if not dry_run:  # new rules: leads sleeping until their next check are looked at too
        app.store.wake_for_new_rules(app.rules.fingerprint)
    ranges = app.store.cycle_ranges(when, size)
    total_leads = sum(n for _, _, n in ranges)
    logger.info("Cycle as of %s UTC: %d leads to look at in %d chunk(s) of up to %d%s",
                f"{when:%Y-%m-%d %H:%M}", total_leads, len(ranges), size,
                " (dry run)" if dry_run else "")
    dry = DRY if dry_run else ""
    label = "DRY RUN (nothing written or sent): " if dry_run else ""
    progress_id = create_progress_artifact(0.0, key=PROGRESS_KEY + dry,
                                           description=f"{label}Leads processed in this cycle")
    # several chunks at once: the pool (threads, a Dask cluster) starts in the background now
    pool = (ChunkPool(app.settings, workers)
            if len(ranges) > 1 and runner_kind(app.settings, workers) != "sequential" else None)
    try:
        total = _plan_and_send(app, ranges, when, dry_run, progress_id, total_leads, pool)
        summary = summarise(total, when, dry_run)
        _sla_expired(summary, total)
        if not dry_run:
            _after_sends(app, when, summary)
    finally:
        if pool is not None:
            pool.close()
    stamp = f"{when:%Y-%m-%d %H:%M} UTC"
    create_table_artifact(headline_rows(summary), key=SUMMARY_KEY + dry,
                          description=f"{label}Nurture cycle {stamp}: headline per campaign")
    create_markdown_artifact(summary_markdown(summary), key=REPORT_KEY + dry,
                             description=f"{label}Nurture cycle {stamp}: report")
    logger.info("Cycle done: %d scored, %d touches sent, %d MQLs, %d recycled",
                summary["leads_scored"], summary["touches_sent"], summary["mqls"],
                summary["recycled"])
    return summary
