"""The deliverability guard: pause a campaign whose spam-report or hard-bounce rate passes
the bulk-sender limits, before it hurts the sending domain.

`guard` runs once per cycle, before planning: it reads the rolling-window rates from the
store, decides with the pure `nurture.services.results.over_limit`, pauses with a
compare-and-set, and emits a `nurture.campaign.paused` Prefect event per pause (id derived
from the campaign and its pause number, so a re-emission after a crash is the same event).
A paused campaign gets nothing planned (`nurture.core.evaluation`) or claimed (the ledger)
until `nurture campaign resume NAME`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from nurture.core.domain import EVENT_NAMESPACE
from nurture.services.ports import CampaignPauses, DeliverabilityStore
from nurture.services.results import GUARD_DAYS, deliverability_report, over_limit

ACTOR = "system:deliverability-guard"


def guard(store: DeliverabilityStore, as_of: datetime | None = None, emit: bool = True
          ) -> list[dict[str, Any]]:
    """Pause every active campaign over a limit; returns the pauses made now."""
    as_of = as_of or datetime.now(UTC)
    status = store.pauses
    current = {r["campaign"]: r for r in status.list()}
    rows = deliverability_report(store.deliverability_rows(
        as_of + timedelta(seconds=1), GUARD_DAYS, since_resume=True), current)
    made = []
    for item in rows:
        why = over_limit(item)
        if why is None or item["status"] == "paused":
            continue
        n = status.pause(item["campaign"], why, ACTOR, as_of, metrics=item)
        if n is not None:
            made.append({"campaign": item["campaign"], "reason": why, "pause": n})
    if emit:
        emit_pending(status)
    return made


def event_id(campaign: str, pauses: int) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE, f"campaign-paused-{campaign}-{pauses}")


def emit_pending(status: CampaignPauses) -> int:
    """Emit `nurture.campaign.paused` for every pause not announced yet (this run's and any
    a crashed run left), then mark it. Without a Prefect API the events stay pending."""
    try:
        from prefect.events import emit_event
    except ImportError:  # pragma: no cover - prefect is a dependency
        return 0
    done = 0
    for row in status.unannounced():
        ev = emit_event(
            event="nurture.campaign.paused",
            resource={"prefect.resource.id": f"nurture.campaign.{row['campaign']}",
                      "prefect.resource.name": row["campaign"]},
            payload={"campaign": row["campaign"], "reason": row["reason"],
                     "metrics": row["metrics"], "pause": row["pauses"],
                     "paused_at": row["paused_at"].isoformat() if row["paused_at"] else None},
            id=event_id(row["campaign"], row["pauses"]))
        if ev is None:  # no events client configured: try again next time
            continue
        status.announced(row["campaign"], row["pauses"])
        done += 1
    return done
