"""Instant routing: every 15 minutes, leads with new activity are re-scored and hand-raisers
(a demo request, a burst of pricing visits) go to sales now — not at tomorrow's cycle.

Content and recycling stay with the daily cycle; this flow only writes new MQLs (with their
handoff, owner, SLA and `nurture.lead.mql` event). One task per chunk of engaged leads. It
leaves a table artifact listing the leads it handed to sales (or saying it handed none).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from nurture.flows.common import (
    changes_markdown,
    dated_run_name,
    emit_lead_events,
    open_app,
    parse_as_of,
)
from nurture.flows.daily_cycle import deliver_handoffs_task
from nurture.services.cycle import ChunkResult, plan_chunk
from nurture.wiring import App, retry_provider_events

CHANGES_KEY = "instant-routing-changes"


@task(name="route-engaged-chunk", cache_policy=NO_CACHE,
      task_run_name="route engaged leads {lo}-{hi}")
def route_chunk_task(app: App, lo: int, hi: int, as_of: datetime) -> ChunkResult:
    return plan_chunk(app.store, app.rules, lo, hi, as_of, app.settings.default_timezone,
                      engaged_only=True)


def _name() -> str:
    """`instant-routing-2026-11-23-0715-3f9a`."""
    return dated_run_name("instant-routing", (flow_run.parameters or {}).get("as_of"))


@flow(name="process-engagement", flow_run_name=_name, validate_parameters=True)
def process_engagement(as_of: str | None = None, chunk_size: int | None = None
                       ) -> dict[str, Any]:
    """Route leads with new activity now; returns counts (looked at, MQLs).

    Args:
        as_of: ISO 8601 time to route "at", e.g. 2026-11-23T07:15:00Z. Empty: now.
        chunk_size: Leads per task. Empty: NURTURE_CHUNK_SIZE (5000).
    """
    logger = get_run_logger()
    when = parse_as_of(as_of)
    app = open_app()
    size = chunk_size or app.settings.chunk_size
    ranges = app.store.cycle_ranges(when, size, engaged_only=True)
    total = ChunkResult()
    looked_at = sum(n for _, _, n in ranges)
    emitted: list[dict[str, Any]] = []
    with app.lease("instant-routing", when) as lease:
        retry_provider_events(app)  # webhook events whose application failed, and more
        emitted += emit_lead_events(app, lease)
        for lo, hi, _n in ranges:
            total.merge(route_chunk_task(app, lo, hi, when))
            emitted += emit_lead_events(app, lease)
    mqls = [e for e in total.events if e.kind == "mql"]
    crm = deliver_handoffs_task(app) if mqls else None
    logger.info("%d lead(s) with new activity; %d handed to sales now", looked_at, len(mqls))
    stamp = f"{when:%Y-%m-%d %H:%M} UTC"
    create_markdown_artifact(
        changes_markdown(f"Instant routing {stamp}",
                         f"**{len(mqls)}** lead(s) handed to sales now, of **{looked_at}** "
                         "with new activity.", emitted),
        key=CHANGES_KEY, description=f"Instant routing {stamp}: {len(mqls)} handed to sales")
    return {"as_of": when.isoformat(), "leads_with_new_activity": looked_at,
            "mqls": len(mqls),
            "handed_to_sales": [{"lead_id": e.lead_id, "email": e.email, "owner": e.owner,
                                 "campaign": e.campaign, "rule": e.rule} for e in mqls],
            "handoff_webhook": crm}
