"""End to end over real HTTP: the cycle sends through the fake SendGrid (which validates every
body against SendGrid's official schema), the fake posts signed Event Webhook batches to the
nurture app on loopback, and touches, scores, suppressions and later sends change as they
should."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from nurture.store import tables as t

AS_OF = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday; education opens 09:00 UTC
API_KEY = "activity-api-key-0123456789"


@pytest.fixture
def world(tmp_path, fake_sendgrid, serve, campaigns_dir, templates_dir):
    from nurture.entrypoints.http.app import create_app
    from nurture.settings import Settings
    from nurture.store.db import upgrade
    from nurture.wiring import App

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'e2e.db'}", transport="sendgrid",
                        sendgrid_api_key=fake_sendgrid.api_key, sendgrid_host=fake_sendgrid.url,
                        sendgrid_webhook_public_key=fake_sendgrid.public_key,
                        campaigns_dir=campaigns_dir, templates_dir=templates_dir,
                        public_url="https://nurture.example", api_key=API_KEY,
                        secret_key="e2e-secret-key-0123456789")
    app = App(settings)
    upgrade(app.engine)
    app.store.upsert_leads([
        {"email": f"{n}@example.com", "first_name": n.title(), "source": "website",
         "timezone": "UTC", "created_at": AS_OF - timedelta(days=1)}
        for n in ("ana", "bo", "cy")])
    server = serve(create_app(app))
    yield app, fake_sendgrid, server
    app.engine.dispose()


def cycle(app, as_of, transport=None):
    from nurture.services.cycle import run_cycle

    ctx = app.send_context(transport)
    try:
        return run_cycle(app.store, ctx, as_of, "UTC", chunk_size=100)
    finally:
        ctx.transport.close()


def touches(app, email=None):
    q = (select(t.touches, t.leads.c.email).join(t.leads, t.leads.c.id == t.touches.c.lead_id)
         .order_by(t.touches.c.id))
    if email:
        q = q.where(t.leads.c.email == email)
    with app.engine.connect() as conn:
        return conn.execute(q).all()


def count(app, table) -> int:
    with app.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def activity_types(app, email):
    with app.engine.connect() as conn:
        return sorted(conn.execute(select(t.activities.c.type).join(
            t.leads, t.leads.c.id == t.activities.c.lead_id).where(
            t.leads.c.email == email)).scalars())


def recorded(fake, email):
    return [m for m in fake.messages if m.to == email]


def test_send_track_and_learn_over_http(world):
    app, fake, server = world
    hook = f"{server.url}/webhooks/sendgrid"

    summary = cycle(app, AS_OF)
    assert summary["touches_sent"] == 3 and summary["touches_failed"] == 0
    assert len(fake.messages) == 3 and not fake.rejected
    by_email = {m.to: m for m in fake.messages}
    for row in touches(app):
        msg = by_email[row.email]
        assert row.status == "sent" and row.provider_message_id == msg.message_id
        assert msg.custom_args == {"touch_id": str(row.id), "campaign": "inbound-saas",
                                   "step": "buyers-guide"}
        p = msg.body["personalizations"][0]
        assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert p["headers"]["List-Unsubscribe"].startswith(
            "<https://nurture.example/unsubscribe/")
        # (send_at is relative to the wall clock: the contract tests cover it)
        assert sorted(msg.body["categories"]) == ["campaign:inbound-saas", "step:buyers-guide"]

    ana, bo, cy = (recorded(fake, f"{n}@example.com") for n in ("ana", "bo", "cy"))
    at = (AS_OF + timedelta(hours=1)).timestamp()  # delivered at 09:00 on the simulated day
    events = (fake.events_for(["processed", "delivered", "open", "click"], ana, at=at)
              + fake.events_for(["processed", "delivered", "machine_open", "scanner_click"],
                                bo, at=at)
              + fake.events_for(["processed", "bounce"], cy, at=at))
    r = fake.post_events(hook, events)
    assert r.status_code == 200, r.text
    assert r.json()["new"] == len(events) and r.json()["suppressed"] == 1

    t_ana, t_bo, t_cy = (touches(app, f"{n}@example.com")[0] for n in ("ana", "bo", "cy"))
    assert (t_ana.delivery_status, t_bo.delivery_status, t_cy.delivery_status) == (
        "delivered", "delivered", "bounced")
    assert "550 5.1.1" in t_cy.error
    # a human open and a real click score; a machine open and a scanner click do not
    assert activity_types(app, "ana@example.com") == ["email_click", "email_open"]
    assert activity_types(app, "bo@example.com") == ["email_machine_open",
                                                     "email_scanner_click"]
    with app.engine.connect() as conn:
        supp = conn.execute(select(t.suppressions)).all()
        audit = conn.execute(select(t.transitions.c.rule, t.transitions.c.reason).join(
            t.leads, t.leads.c.id == t.transitions.c.lead_id).where(
            t.leads.c.email == "cy@example.com", t.transitions.c.rule.like("suppression%"))
        ).all()
    assert [(s.email, s.reason) for s in supp] == [("cy@example.com", "bounce")]
    assert audit and "bounce" in audit[0].reason

    # SendGrid retries batches: the same events again are stored but applied once
    batches_before = count(app, t.webhook_batches)
    r = fake.post_events(hook, events)
    assert r.status_code == 200 and r.json()["new"] == 0
    assert r.json()["duplicates"] == len(events)
    assert count(app, t.webhook_batches) == batches_before + 1
    assert activity_types(app, "ana@example.com") == ["email_click", "email_open"]

    # a tampered body or a stale signature: 403, nothing stored
    for kwargs in ({"tamper": True},
                   {"timestamp": str(int(datetime.now(UTC).timestamp()) - 3600)}):
        r = fake.post_events(hook, fake.events_for(["spamreport"], ana), **kwargs)
        assert r.status_code == 403, r.text
    assert count(app, t.webhook_batches) == batches_before + 1
    assert count(app, t.suppressions) == 1

    # scores moved: ana's click counts 5 points (opens score 0 in lifecycle.yaml), bo's
    # scanner click nothing; the next cycle sees it
    cycle(app, AS_OF + timedelta(days=1))
    with app.engine.connect() as conn:
        eng = dict(conn.execute(select(t.leads.c.email, t.leads.c.engagement_score)).all())
    assert eng["ana@example.com"] == pytest.approx(5 * 0.5 ** (1 / 30), rel=0.05)
    assert eng["bo@example.com"] == 0

    # ana unsubscribes through SendGrid's link: never emailed again; bo gets step two
    r = fake.post_events(hook, fake.events_for(["unsubscribe"], ana, at=at + 86400))
    assert r.status_code == 200 and r.json()["suppressed"] == 1
    fake.messages.clear()
    summary = cycle(app, AS_OF + timedelta(days=7))
    assert [m.to for m in fake.messages] == ["bo@example.com"]
    assert fake.messages[0].custom_args["step"] == "funnel-benchmark"
    assert [r.step for r in touches(app, "ana@example.com")] == ["buyers-guide"]


def test_events_for_unknown_touches_are_kept(world):
    app, fake, server = world
    ev = {"email": "stranger@example.com", "timestamp": int(AS_OF.timestamp()),
          "event": "delivered", "sg_event_id": "unknown-1", "sg_message_id": "zzz.filter",
          "touch_id": "999999"}
    r = fake.post_events(f"{server.url}/webhooks/sendgrid", [ev])
    assert r.status_code == 200 and r.json()["unmatched"] == 1
    with app.engine.connect() as conn:
        row = conn.execute(select(t.provider_events)).one()
    assert (row.event_id, row.outcome, row.touch_id) == ("unknown-1", "unmatched", None)


def test_unsigned_or_malformed_batches_are_refused(world):
    app, fake, server = world
    hook = f"{server.url}/webhooks/sendgrid"
    assert fake.post_events(hook, [{"event": "open"}], sign=False).status_code == 403
    r = httpx.post(hook, content=b"not json", headers={
        "X-Twilio-Email-Event-Webhook-Signature": fake.sign(b"not json", "1"),
        "X-Twilio-Email-Event-Webhook-Timestamp": "1"})
    assert r.status_code == 403  # stale timestamp is checked before anything else
    assert count(app, t.webhook_batches) == 0


def test_faults_retry_fail_cleanly_and_never_resend(world):
    from nurture.adapters.delivery.sendgrid import RetryPolicy, SendGridTransport
    from nurture.services.cycle import SendPhaseStopped

    app, fake, server = world

    def transport(key=None, timeout=5.0):
        return SendGridTransport(key or fake.api_key, fake.url, timeout_seconds=timeout,
                                 concurrency=1, retry=RetryPolicy(attempts=4,
                                                                  base_seconds=0.01))

    # bad credentials: the send phase stops with one clear error, nothing leaves `planned`
    with pytest.raises(SendPhaseStopped, match="refused the API key"):
        cycle(app, AS_OF, transport(key="SG.wrong"))
    assert {r.status for r in touches(app)} == {"planned"}
    assert not fake.messages

    # ana: two 429s then accepted; bo: 500 on every attempt; cy: SendGrid says 400
    fake.inject(status=429, times=2, to="ana@example.com")
    fake.inject(status=503, times=4, to="bo@example.com")
    fake.inject(status=400, to="cy@example.com")
    before = fake.requests
    cycle(app, AS_OF, transport())
    rows = {r.email: r for r in touches(app)}
    assert rows["ana@example.com"].status == "sent"
    assert rows["ana@example.com"].provider_message_id == fake.messages[0].message_id
    # a passing failure is the same step again at a later run (#8), never the next step
    assert rows["bo@example.com"].status == "planned"
    assert "gave up after 4 attempts in this run" in rows["bo@example.com"].error
    assert rows["bo@example.com"].retry_at >= AS_OF + timedelta(minutes=15)
    assert rows["cy@example.com"].status == "failed"
    assert rows["cy@example.com"].error.startswith("SendGrid 400")
    assert fake.requests - before == 3 + 4 + 1
    assert len(fake.messages) == 1


def test_a_timeout_is_unknown_not_resent_and_the_webhook_settles_it(world):
    from nurture.adapters.delivery.sendgrid import RetryPolicy, SendGridTransport

    app, fake, server = world
    fake.inject(delay=1.0)  # SendGrid accepts it, but answers after the client gave up
    slow = SendGridTransport(fake.api_key, fake.url, timeout_seconds=0.3, concurrency=1,
                             retry=RetryPolicy(attempts=3, base_seconds=0.01))
    cycle(app, AS_OF, slow)
    time_out = [r for r in touches(app) if r.status == "in_doubt"]
    assert len(time_out) == 1 and "not resent" in time_out[0].error
    # the message did reach SendGrid: exactly once
    import time

    time.sleep(1.0)
    assert len([m for m in fake.messages if m.to == time_out[0].email]) == 1
    cycle(app, AS_OF + timedelta(hours=1))  # a re-run does not resend it
    assert len([m for m in fake.messages if m.to == time_out[0].email]) == 1
    # SendGrid's `processed` event carries our touch id: the touch is settled as sent
    rec = [m for m in fake.messages if m.to == time_out[0].email]
    r = fake.post_events(f"{server.url}/webhooks/sendgrid", fake.events_for(["processed"],
                                                                             rec))
    assert r.json()["settled"] == 1
    row = [r for r in touches(app) if r.id == time_out[0].id][0]
    assert row.status == "sent" and row.provider_message_id == rec[0].message_id


def test_one_click_unsubscribe(world):
    from nurture.core.unsubscribe import make_token

    app, fake, server = world
    token = make_token(app.secret, "ana@example.com", "inbound-saas", 1)
    page = httpx.get(f"{server.url}/unsubscribe/{token}")
    assert page.status_code == 200 and "ana@example.com" in page.text
    assert count(app, t.suppressions) == 0  # GET never unsubscribes (link scanners)

    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    r = httpx.post(f"{server.url}/unsubscribe/{forged}",
                   content=b"List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and count(app, t.suppressions) == 0

    r = httpx.post(f"{server.url}/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json() == {"unsubscribed": True}
    assert activity_types(app, "ana@example.com") == ["unsubscribe"]
    r = httpx.post(f"{server.url}/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert r.status_code == 200 and count(app, t.suppressions) == 1
    summary = cycle(app, AS_OF)
    assert summary["touches_sent"] == 2
    assert "ana@example.com" not in {m.to for m in fake.messages}


def test_activity_api(world):
    app, fake, server = world
    url = f"{server.url}/activities"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    good = {"id": "web-1", "email": "Ana@Example.com", "type": "pricing_page_view",
            "occurred_at": "2026-11-01T10:00:00Z", "properties": {"url": "/pricing"}}
    assert httpx.post(url, json=good).status_code == 401
    assert httpx.post(url, json=good, headers={"Authorization": "Bearer nope"}
                      ).status_code == 401
    r = httpx.post(url, content=b"[" + b'"x",' * 400_000 + b'"x"]', headers=auth)
    assert r.status_code == 413 and count(app, t.activities) == 0
    r = httpx.post(url, json=[good, good | {"id": "web-2", "type": "teleport"},
                              good | {"id": "web-3", "email": "not-an-email"}], headers=auth)
    assert r.status_code == 422
    assert [p["index"] for p in r.json()["problems"]] == [1, 2]
    assert "teleport" in r.json()["problems"][0]["error"]
    assert r.json()["stored"]["inserted"] == 1  # the valid one is never dropped
    assert count(app, t.activities) == 1
    r = httpx.post(url, json=good, headers=auth)  # a resend is safe: ids de-duplicate
    assert r.status_code == 202 and r.json() == {"inserted": 0, "duplicates": 1,
                                                 "leads_created": 0}
    r = httpx.post(url, json=[good, good | {"id": "web-9", "email": "new@example.com",
                                            "type": "demo_request"}], headers=auth)
    assert r.json() == {"inserted": 1, "duplicates": 1, "leads_created": 1}
    assert activity_types(app, "ana@example.com") == ["pricing_page_view"]
    assert httpx.get(f"{server.url}/health").json()["webhook_signing"] == "verified"
