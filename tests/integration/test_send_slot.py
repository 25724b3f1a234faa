"""The send slot reaches SendGrid: a touch planned for the next window opening is handed over
as a scheduled send (`send_at`), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nurture.adapters.delivery.sendgrid import build_mail
from nurture.services.cycle import SendContext, plan_chunk, send_chunk

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_a_message_that_is_not_scheduled_yet_is_sent_at_its_slot(store, rules,
                                                                  templates_dir):
    """send_chunk hands the transport `send_at` = the window opening, which build_mail turns
    into SendGrid's scheduled send (up to 72 h ahead)."""
    from nurture.adapters.delivery.memory import MemoryTransport
    from nurture.core.rendering import Renderer

    store.upsert_leads([{"email": "a@example.com", "source": "website", "timezone": "UTC",
                         "created_at": NOW - timedelta(days=1)}])
    as_of = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)  # Saturday: window opens Monday 09:00
    plan_chunk(store, rules, 1, 10, as_of, "UTC")
    mem = MemoryTransport()
    send_chunk(store, SendContext(rules, Renderer(templates_dir), mem, "k" * 32,
                                  "https://n.example"), 1, 10, as_of)
    [msg] = mem.sent
    assert msg.send_at == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    body = build_mail(msg, now=as_of)
    assert body["personalizations"][0]["send_at"] == int(msg.send_at.timestamp())
