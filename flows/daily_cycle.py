"""The daily nurture cycle as a Prefect flow: one task per chunk of leads, never per lead.

Thin by design: each task calls one engine service (`nurture.cycle.plan_chunk`,
`send_chunk`) on an id range. The flow adds what operators see in the Prefect UI: a run
name with the date, a progress artifact, a per-campaign table, a markdown summary and an
event per MQL / recycle that automations can react to.
"""

from __future__ import annotations

import sys
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

from flows.common import emit_lead_events, parse_as_of
from nurture.cycle import ChunkResult, finish_held, plan_chunk, send_chunk, summarise
from nurture.provider_events import retry_provider_events
from nurture.report import summary_markdown, summary_table_rows
from nurture.settings import Settings
from nurture.wiring import App, deliver_handoffs

_parse_as_of = parse_as_of  # older name


def _run_name() -> str:
    params = flow_run.parameters or {}
    try:
        day = _parse_as_of(params.get("as_of")).date().isoformat()
    except ValueError:
        day = "bad-as-of"
    return f"nurture-cycle-{day}" + ("-dry-run" if params.get("dry_run") else "")


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


@task(name="funnel-report", cache_policy=NO_CACHE)
def funnel_report_task(app: App, as_of: datetime) -> dict[str, Any]:
    """The marketing ↔ sales funnel after this cycle, as a markdown artifact."""
    from lead_store.funnel_queries import load_funnel_rows
    from nurture.funnel import compute_funnel, funnel_markdown

    report = compute_funnel(*load_funnel_rows(app.engine), as_of=as_of)
    create_markdown_artifact(funnel_markdown(report), key="nurture-funnel",
                             description=f"Lead funnel as of {as_of.date()}")
    return report


@task(name="deliver-handoffs", cache_policy=NO_CACHE, retries=0)
def deliver_handoffs_task(app: App) -> dict[str, int] | None:
    """Pending MQL handoffs to the CRM webhook (if configured); failures retry next run."""
    return deliver_handoffs(app)


class _TerminalProgress:
    """A rich progress bar on an interactive terminal; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.bar = None
        if sys.stderr.isatty() and total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bar = Progress("[bold]nurture cycle", BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("leads", total=total)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _run_chunks(app: App, lease, ranges, when: datetime, dry_run: bool, progress_id,
                total_leads: int) -> ChunkResult:
    """Plan then send chunk by chunk; lead events are announced after each plan; touches
    other live runs hold are waited for (or taken over once their heartbeat stops)."""
    logger = get_run_logger()
    ctx = app.send_context()
    bar = _TerminalProgress(total_leads)
    total = ChunkResult()
    done = 0
    held = []
    try:
        for lo, hi, n in ranges:
            total.merge(plan_chunk_task(app, lo, hi, when, dry_run))
            if lease is not None:
                emit_lead_events(app, lease)
            sent = send_chunk_task(app, ctx, lo, hi, when, dry_run, lease)
            if sent.held:
                held.append((lo, hi, n))
            total.merge(sent)
            done += n
            bar.advance(n)
            update_progress_artifact(progress_id, 100.0 * done / max(total_leads, 1))
        if total.held:
            total.merge(finish_held(app.store, ctx, when, lease, total.held, held,
                                    notify=logger.warning,
                                    max_wait=app.settings.run_wait_seconds))
            total.held = {}
    finally:
        bar.stop()
        ctx.transport.close()
    return total


@flow(name="daily-nurture-cycle", flow_run_name=_run_name, log_prints=True,
      validate_parameters=True)
def daily_nurture_cycle(as_of: str | None = None, dry_run: bool = False,
                        chunk_size: int | None = None,
                        campaigns_dir: str | None = None) -> dict[str, Any]:
    """Score every due lead, segment, route (MQL, SLA, recycle), plan and send touches.

    as_of: ISO datetime the cycle runs "at" (default now) — simulations move it forward.
    dry_run: decide and report, but write and send nothing.
    chunk_size: leads per task (default NURTURE_CHUNK_SIZE).
    """
    logger = get_run_logger()
    when = _parse_as_of(as_of)
    overrides: dict[str, Any] = {}
    if campaigns_dir:
        overrides["campaigns_dir"] = campaigns_dir
    app = App(Settings(**overrides))
    app.require_schema()
    app.config  # noqa: B018 - fail the run early, with the validation message, on bad config
    size = chunk_size or app.settings.chunk_size
    ranges = app.store.cycle_ranges(when, size)
    total_leads = sum(n for _, _, n in ranges)
    logger.info("Cycle as of %s: %d leads to look at in %d chunk(s) of up to %d%s",
                when.isoformat(), total_leads, len(ranges), size,
                " (dry run)" if dry_run else "")
    progress_id = create_progress_artifact(0.0, key="nurture-cycle-progress",
                                           description="Leads processed in this cycle")
    if dry_run:
        total = _run_chunks(app, None, ranges, when, True, progress_id, total_leads)
    else:
        with app.lease("daily-cycle", when) as lease:
            retry_provider_events(app)  # webhook events whose application failed, and more
            emit_lead_events(app, lease)  # anything a stopped run recorded but never sent
            total = _run_chunks(app, lease, ranges, when, False, progress_id, total_leads)
            emit_lead_events(app, lease)
    if not ranges:
        update_progress_artifact(progress_id, 100.0)
    summary = summarise(total, when, dry_run)
    if not dry_run:
        crm = deliver_handoffs_task(app)
        if crm is not None:
            summary["handoff_webhook"] = crm
        funnel_report_task(app, when)
    create_table_artifact(summary_table_rows(summary), key="nurture-cycle-summary",
                          description=f"Nurture cycle {when.date()} per campaign")
    create_markdown_artifact(summary_markdown(summary), key="nurture-cycle-report",
                             description=f"Nurture cycle {when.date()}")
    logger.info("Cycle done: %d scored, %d touches sent, %d MQLs, %d recycled",
                summary["leads_scored"], summary["touches_sent"], summary["mqls"],
                summary["recycled"])
    return summary
