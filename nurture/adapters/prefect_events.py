"""Campaign pauses as Prefect events (`nurture.campaign.paused`), for automations in the
Prefect UI. Each pause has a fixed event id (campaign, pause number and when it paused), so
announcing again after a crash is the same event while another database's pause number 1 is
not, and a pause is marked announced only once Prefect took it."""

from __future__ import annotations

import uuid
from datetime import datetime

from prefect.events import emit_event

from nurture.core.domain import EVENT_NAMESPACE
from nurture.services.ports import CampaignPauses


def event_id(campaign: str, pauses: int, paused_at: datetime | None) -> uuid.UUID:
    at = paused_at.isoformat() if paused_at else ""
    return uuid.uuid5(EVENT_NAMESPACE, f"campaign-paused-{campaign}-{pauses}-{at}")


def announce_pauses(status: CampaignPauses) -> int:
    """Emit `nurture.campaign.paused` for every pause not announced yet, then mark it.
    Without a Prefect API the events stay pending for the next run."""
    done = 0
    for row in status.unannounced():
        ev = emit_event(
            event="nurture.campaign.paused",
            resource={"prefect.resource.id": f"nurture.campaign.{row['campaign']}",
                      "prefect.resource.name": row["campaign"]},
            payload={"campaign": row["campaign"], "reason": row["reason"],
                     "metrics": row["metrics"], "pause": row["pauses"],
                     "paused_at": row["paused_at"].isoformat() if row["paused_at"] else None},
            id=event_id(row["campaign"], row["pauses"], row["paused_at"]))
        if ev is None:  # no events client configured: try again next time
            continue
        status.announced(row["campaign"], row["pauses"])
        done += 1
    return done
