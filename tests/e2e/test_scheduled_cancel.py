"""A send scheduled at SendGrid (send_at up to 72 h ahead) is stopped by an unsubscribe that
arrives before it goes out: over loopback, the fake SendGrid holds the message, our app
cancels its batch, the fake reports it cancelled and the ledger says cancelled."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text

from nurture.store import tables as t

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def world(db_url, fake_sendgrid, serve, campaigns_dir, templates_dir):
    from nurture.entrypoints.http.app import create_app
    from nurture.settings import Settings
    from nurture.store.db import make_engine, upgrade
    from nurture.wiring import App

    engine = make_engine(db_url)
    upgrade(engine)
    engine.dispose()
    app = App(Settings(database_url=db_url, transport="sendgrid",
                       sendgrid_api_key=fake_sendgrid.api_key, sendgrid_host=fake_sendgrid.url,
                       sendgrid_webhook_public_key=fake_sendgrid.public_key,
                       campaigns_dir=campaigns_dir, templates_dir=templates_dir,
                       public_url="https://nurture.example",
                       secret_key="sched-secret-0123456789"))
    app.store.upsert_leads([{"email": f"{n}@example.com", "first_name": n.title(),
                             "source": "website", "timezone": "UTC",
                             "created_at": NOW - timedelta(days=2)} for n in ("ana", "bo")])
    server = serve(create_app(app))
    yield app, fake_sendgrid, server
    app.engine.dispose()


def transport(fake):
    from nurture.adapters.delivery.sendgrid import RetryPolicy, SendGridTransport

    return SendGridTransport(fake.api_key, fake.url, timeout_seconds=5, concurrency=1,
                             retry=RetryPolicy(attempts=3, base_seconds=0.01))


def message(touch_id: int, email: str, send_at: datetime):
    from nurture.core.config import Sender
    from nurture.core.messages import Message

    sender = Sender(from_email="m@acme.example", from_name="Acme", reply_to=None,
                    postal_address="1 Main St, Springfield")
    return Message(touch_id, email, None, sender, "Hi", "<p>x</p>", "x",
                   "https://nurture.example/unsubscribe/x", send_at, "inbound-saas", "s1")


def schedule(app, fake, email: str, hours: float = 2.0) -> int:
    """A touch sent through the real transport with send_at ahead, recorded as the ledger
    does (compare-and-set from `sending`), batch id included."""
    send_at = NOW + timedelta(hours=hours)
    with app.engine.begin() as conn:
        lead_id = conn.execute(select(t.leads.c.id).where(t.leads.c.email == email)
                               ).scalar_one()
        tid = conn.execute(t.touches.insert().values(
            lead_id=lead_id, campaign="inbound-saas", track="education", step="s1",
            status="sending", planned_at=NOW, send_at=send_at, updated_at=NOW)
            .returning(t.touches.c.id)).scalar_one()
    tr = transport(fake)
    try:
        [d] = tr.send_many([message(tid, email, send_at)])
    finally:
        tr.close()
    assert d.ok and d.batch_id, d
    with app.engine.begin() as conn:
        assert conn.execute(text(
            "UPDATE touches SET status='sent', sent_at=:now, provider_message_id=:mid, "
            "provider_batch_id=:b WHERE id=:i AND status='sending'"),
            {"now": NOW.replace(tzinfo=None) if app.engine.dialect.name == "sqlite" else NOW,
             "mid": d.message_id, "b": d.batch_id, "i": tid}).rowcount == 1
    return tid


def ledger(app, tid):
    with app.engine.connect() as conn:
        return conn.execute(select(t.touches).where(t.touches.c.id == tid)).one()


def fake_state(fake, touch_id: int) -> str:
    msgs = httpx.get(f"{fake.url}/__fake__/messages").json()
    return [m for m in msgs if m["custom_args"]["touch_id"] == str(touch_id)][0]["state"]


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_one_click_unsubscribe_cancels_a_scheduled_send(world):
    from nurture.core.unsubscribe import make_token

    app, fake, server = world
    ana, bo = schedule(app, fake, "ana@example.com"), schedule(app, fake, "bo@example.com")
    assert fake_state(fake, ana) == "scheduled" and fake.messages[0].body["batch_id"]
    token = make_token(app.secret, "ana@example.com", "inbound-saas", ana)
    r = httpx.post(f"{server.url}/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert r.status_code == 200
    assert wait_for(lambda: ledger(app, ana).status == "cancelled")
    assert fake_state(fake, ana) == "cancelled" and fake_state(fake, bo) == "scheduled"
    row = ledger(app, ana)
    assert "cancelled at SendGrid" in row.error and "suppressed" in row.error
    assert ledger(app, bo).status == "sent"
    # SendGrid never delivers it: no event is ever emitted for the cancelled message
    assert {e["touch_id"] for e in fake.events_for(["processed", "delivered"])} == {str(bo)}


def test_a_webhook_spam_report_cancels_and_a_failed_cancel_is_retried(world):
    from nurture.wiring import retry_provider_events

    app, fake, server = world
    bo = schedule(app, fake, "bo@example.com", hours=70)
    fake.inject(status=503, path="/v3/user/scheduled_sends")  # SendGrid hiccups once
    before = fake.requests
    report = {"email": "bo@example.com", "timestamp": int(NOW.timestamp()) - 60,
              "event": "spamreport", "sg_event_id": "spam-1", "sg_message_id": "old.filter"}
    r = fake.post_events(f"{server.url}/webhooks/sendgrid", [report])
    assert r.status_code == 200 and r.json()["suppressed"] == 1
    assert wait_for(lambda: fake.requests > before)  # the cancellation was tried, failed
    time.sleep(0.3)
    assert ledger(app, bo).status == "sent" and fake_state(fake, bo) == "scheduled"

    out = retry_provider_events(app)  # what the next daily cycle / instant routing runs
    assert out["cancelled"] == 1 and out["cancel_failed"] == 0
    assert ledger(app, bo).status == "cancelled" and fake_state(fake, bo) == "cancelled"
    assert retry_provider_events(app)["cancelled"] == 0


def test_no_batch_id_means_not_sent_and_immediate_sends_need_none(world):
    app, fake, server = world
    fake.inject(status=503, times=3, path="/v3/mail/batch")
    tr = transport(fake)
    try:
        [d] = tr.send_many([message(901, "ana@example.com", NOW + timedelta(hours=3))])
        assert not d.ok and not d.unknown and "no SendGrid batch id" in d.error
        assert not fake.messages
        [d] = tr.send_many([message(902, "ana@example.com", NOW)])
        assert d.ok and d.batch_id is None and "batch_id" not in fake.messages[0].body
        [d] = tr.send_many([message(903, "ana@example.com", NOW + timedelta(hours=3))])
        assert d.ok and d.batch_id and fake.messages[1].body["batch_id"] == d.batch_id
    finally:
        tr.close()


def test_a_refused_cancel_says_what_sendgrid_answered(fake_sendgrid):
    """A cancel SendGrid refuses is a CancelFailed naming its status (retried by the next
    run), not a crash in the error message."""
    from nurture.adapters.sendgrid_scheduled import ScheduledSendCanceller
    from nurture.core.provider_events import CancelFailed

    fake_sendgrid.inject(status=503, path="/v3/user/scheduled_sends")
    canceller = ScheduledSendCanceller(fake_sendgrid.api_key, fake_sendgrid.url)
    try:
        with pytest.raises(CancelFailed, match="did not cancel batch b-1: SendGrid 503"):
            canceller("b-1")
    finally:
        canceller.close()
