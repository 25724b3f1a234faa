"""Instant routing: every 15 minutes, leads with new activity are re-scored and hand-raisers
(a demo request, a burst of pricing visits) go to sales now — not at tomorrow's cycle.

Content and recycling stay with the daily cycle; this flow only writes new MQLs (with their
handoff, owner, SLA and `nurture.lead.mql` event). One task per chunk of engaged leads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import emit_lead_events, parse_as_of
from flows.daily_cycle import deliver_handoffs_task
from nurture.cycle import ChunkResult, plan_chunk
from nurture.provider_events import retry_provider_events
from nurture.settings import Settings
from nurture.wiring import App


@task(name="route-engaged-chunk", cache_policy=NO_CACHE,
      task_run_name="route engaged leads {lo}-{hi}")
def route_chunk_task(app: App, lo: int, hi: int, as_of: datetime) -> ChunkResult:
    return plan_chunk(app.store, app.rules, lo, hi, as_of, app.settings.default_timezone,
                      engaged_only=True)


def _name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    try:
        when = parse_as_of(params.get("as_of"))
    except ValueError:
        return "process-engagement"
    return f"process-engagement-{when:%Y-%m-%d-%H%M}"


@flow(name="process-engagement", flow_run_name=_name, validate_parameters=True)
def process_engagement(as_of: str | None = None, chunk_size: int | None = None
                       ) -> dict[str, Any]:
    """Route leads with new activity now; returns counts (looked at, MQLs)."""
    logger = get_run_logger()
    when = parse_as_of(as_of)
    app = App(Settings())
    app.require_schema()
    app.config  # noqa: B018 - fail early on bad config
    size = chunk_size or app.settings.chunk_size
    ranges = app.store.cycle_ranges(when, size, engaged_only=True)
    total = ChunkResult()
    looked_at = sum(n for _, _, n in ranges)
    with app.lease("instant-routing", when) as lease:
        retry_provider_events(app)  # webhook events whose application failed, and more
        emit_lead_events(app, lease)
        for lo, hi, _n in ranges:
            total.merge(route_chunk_task(app, lo, hi, when))
            emit_lead_events(app, lease)
    mqls = [e for e in total.events if e.kind == "mql"]
    crm = deliver_handoffs_task(app) if mqls else None
    logger.info("%d lead(s) with new activity; %d handed to sales now", looked_at, len(mqls))
    return {"as_of": when.isoformat(), "leads_with_new_activity": looked_at,
            "mqls": len(mqls),
            "handed_to_sales": [{"email": e.email, "owner": e.owner, "rule": e.rule}
                                for e in mqls], "handoff_webhook": crm}
