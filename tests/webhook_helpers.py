"""Helpers shared by the webhook tests (tests/integration/test_webhook_events.py and
test_webhook_bulk_apply.py): leads, sent touches, SendGrid events, posting a batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from nurture.services.events import WebhookEvents
from nurture.store import tables as t

NOW = datetime.now(UTC).replace(microsecond=0)
TS = int((NOW - timedelta(hours=1)).timestamp())


def lead(store, email: str) -> int:
    store.upsert_leads([{"email": email, "first_name": "X", "source": "website",
                         "timezone": "UTC", "created_at": NOW - timedelta(days=3)}])
    with store.engine.connect() as conn:
        return conn.execute(select(t.leads.c.id).where(t.leads.c.email == email)).scalar_one()


def touch(store, email: str, status: str = "sent", step: str = "s1", **extra) -> int:
    lead_id = lead(store, email)
    with store.engine.begin() as conn:
        return conn.execute(t.touches.insert().values(
            lead_id=lead_id, campaign="c", track="t", step=step, status=status,
            planned_at=NOW - timedelta(hours=2), send_at=NOW - timedelta(hours=2),
            sent_at=(NOW - timedelta(hours=2)) if status == "sent" else None,
            updated_at=NOW, **extra).returning(t.touches.c.id)).scalar_one()


def ev(kind: str, email: str, tid: int | None = None, eid: str | None = None, ts=TS,
       **extra) -> dict:
    e = {"event": kind, "email": email, "timestamp": ts,
         "sg_event_id": eid or f"{kind}-{email}-{tid}-{ts}", "sg_message_id": "m1.filter"}
    if tid is not None:
        e["touch_id"] = str(tid)
    return e | extra


def post(events: WebhookEvents, batch: list, bulk: bool = True):
    """Store and apply a batch as the webhook does (`ingest`); unless told otherwise, it
    must go the bulk way (one transaction), not the event-by-event fallback."""
    batch_id, rep = events.ingest(json.dumps(batch), False, batch)
    assert rep is not None, "stored but not applied"
    if bulk:
        note = row(events.engine, t.webhook_batches, id=batch_id).error
        assert "event by event" not in (note or ""), note
    return rep


def row(engine, table, **where):
    with engine.connect() as conn:
        q = select(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return conn.execute(q).one()
