"""Results inputs in the lead store, on SQLite and PostgreSQL: first-touch source/UTM kept
beside the latest, deal amounts on sales transitions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from nurture.core.sales import FeedbackRefused
from nurture.services.feedback import record_feedback
from nurture.store import tables as t
from nurture.store.sales import SalesStore

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _lead(store, email):
    with store.engine.connect() as conn:
        return conn.execute(select(t.leads).where(t.leads.c.email == email)).first()


def test_reimport_keeps_first_touch(store):
    store.upsert_leads([{"email": "a@x.example", "source": "website", "utm_source": "google",
                         "utm_medium": "cpc", "utm_campaign": "spring"}])
    store.upsert_leads([{"email": "a@x.example", "source": "tradeshow",
                         "utm_campaign": "expo"}])
    row = _lead(store, "a@x.example")
    assert (row.source, row.utm_campaign, row.utm_source) == ("tradeshow", "expo", "google")
    assert (row.first_source, row.first_utm_source, row.first_utm_medium,
            row.first_utm_campaign) == ("website", "google", "cpc", "spring")


def test_lead_created_by_an_activity_has_no_first_touch(store):
    store.insert_activities([{"id": "e1", "email": "b@x.example", "type": "email_open",
                              "occurred_at": NOW}])
    assert _lead(store, "b@x.example").first_source is None


def test_deal_amount_on_the_transition(store, rules):
    store.upsert_leads([{"email": "c@x.example", "source": "website"}])
    with store.engine.begin() as conn:
        conn.execute(t.leads.update().values(lifecycle_stage="mql"))
    sales = SalesStore(store.engine)
    with pytest.raises(FeedbackRefused, match="amount"):
        record_feedback(sales, rules, "c@x.example", "accept", NOW, amount=10)
    with pytest.raises(FeedbackRefused, match=">= 0"):
        record_feedback(sales, rules, "c@x.example", "opportunity", NOW, amount=-1)
    out = record_feedback(sales, rules, "c@x.example", "opportunity", NOW,
                          amount=12000)
    assert out["amount"] == 12000.0
    record_feedback(sales, rules, "c@x.example", "won", NOW, amount=15000.5)
    with store.engine.connect() as conn:
        got = conn.execute(select(t.transitions.c.to_stage, t.transitions.c.amount)
                           .order_by(t.transitions.c.id)).all()
    assert [tuple(r) for r in got] == [("opportunity", 12000.0), ("customer", 15000.5)]
