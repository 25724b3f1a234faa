"""What the flows share: parsing `as_of`, and announcing recorded lead events to Prefect."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from nurture.imports import parse_time

# lead event N is always Prefect event uuid5(NS, N): re-emitting after a crash is a no-op
EVENT_NAMESPACE = uuid.UUID("6f1d3a52-8c2e-4b8f-9a51-2f0d5d1c7e10")


def parse_as_of(as_of: str | datetime | None) -> datetime:
    if as_of is None or as_of == "":
        return datetime.now(UTC)
    if isinstance(as_of, datetime):
        return as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)
    return parse_time(as_of)


def emit_lead_events(app: Any, lease: Any) -> int:
    """Emit every recorded, not yet emitted lead event (this run's and any a stopped run
    left), each under its fixed event id, then mark them. Returns how many."""
    from prefect.events import emit_event

    from lead_store.lead_events import LeadEventOutbox

    outbox = LeadEventOutbox(app.engine)
    total = 0
    while True:
        lease.check()
        batch = outbox.claim(lease.run_id, lease.lapse)
        if not batch:
            return total
        for ev in batch:
            p = ev.payload
            campaign = p.get("campaign")
            emit_event(
                event=f"nurture.lead.{ev.kind}",
                resource={"prefect.resource.id": f"nurture.lead.{ev.lead_id}",
                          "prefect.resource.name": p.get("email") or f"lead {ev.lead_id}"},
                related=[{"prefect.resource.id": f"nurture.campaign.{campaign}",
                          "prefect.resource.role": "campaign",
                          "prefect.resource.name": campaign}] if campaign else None,
                payload=p, id=uuid.uuid5(EVENT_NAMESPACE, f"lead-event-{ev.id}"))
        _flush()  # handed to the server before they are marked: a crash re-emits, never loses
        outbox.mark_emitted([ev.id for ev in batch], lease.run_id)
        total += len(batch)


def _flush() -> None:
    from prefect.events.worker import EventsWorker

    EventsWorker.instance().wait_until_empty()
