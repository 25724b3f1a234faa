"""`POST /sales/feedback`: the same service as the CLI, behind the API key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import insert, select

from nurture.store import tables as t

KEY = "sales-api-key-0123456789"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_sales_feedback_api(tmp_path, serve, campaigns_dir, templates_dir):
    from nurture.entrypoints.http.app import create_app
    from nurture.settings import Settings
    from nurture.store.db import upgrade
    from nurture.wiring import App

    app = App(Settings(database_url=f"sqlite:///{tmp_path / 's.db'}", api_key=KEY,
                       campaigns_dir=campaigns_dir, templates_dir=templates_dir))
    upgrade(app.engine)
    with app.engine.begin() as conn:
        lead_id = conn.execute(insert(t.leads).values(
            email="m@example.com", attributes={}, created_at=NOW, updated_at=NOW,
            lifecycle_stage="mql", stage_entered_at=NOW, recycle_count=0)
            .returning(t.leads.c.id)).scalar_one()
        conn.execute(insert(t.handoffs).values(
            lead_id=lead_id, owner="ana@acme.example", status="pending", rule="r", reason="x",
            created_at=NOW, sla_due_at=NOW + timedelta(hours=48)))
    url = serve(create_app(app)).url + "/sales/feedback"
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"email": "m@example.com", "action": "reject", "reason": "competitor",
            "note": "went with a rival", "actor": "crm:hubspot"}

    assert httpx.post(url, json=body).status_code == 401
    r = httpx.post(url, json=body | {"reason": "nope"}, headers=auth)
    assert r.status_code == 409 and "competitor" in r.json()["error"]
    assert httpx.post(url, json=body | {"action": "fly"}, headers=auth).status_code == 422
    assert httpx.post(url, json=body | {"email": "x@example.com"},
                      headers=auth).status_code == 404
    with app.engine.connect() as conn:
        assert conn.execute(select(t.transitions)).all() == []

    r = httpx.post(url, json=body, headers=auth)
    assert r.status_code == 200, r.text
    assert (r.json()["to"], r.json()["actor"], r.json()["rule"]) == (
        "disqualified", "crm:hubspot", "routing.sales_rejected.competitor")
    r = httpx.post(url, json=body, headers=auth)  # already disqualified: refused, no change
    assert r.status_code == 409 and "this lead is disqualified" in r.json()["error"]
    with app.engine.connect() as conn:
        assert len(conn.execute(select(t.transitions)).all()) == 1
        h = conn.execute(select(t.handoffs)).one()
    assert (h.status, h.outcome_reason, h.note) == ("rejected", "competitor",
                                                    "went with a rival")
    app.engine.dispose()


def test_sales_feedback_api_records_deal_amounts(tmp_path, serve, campaigns_dir,
                                                 templates_dir):
    from nurture.entrypoints.http.app import create_app
    from nurture.settings import Settings
    from nurture.store.db import upgrade
    from nurture.wiring import App

    app = App(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", api_key=KEY,
                       campaigns_dir=campaigns_dir, templates_dir=templates_dir))
    upgrade(app.engine)
    with app.engine.begin() as conn:
        conn.execute(insert(t.leads).values(
            email="d@example.com", attributes={}, created_at=NOW, updated_at=NOW,
            lifecycle_stage="sal", stage_entered_at=NOW, recycle_count=0))
    url = serve(create_app(app)).url + "/sales/feedback"
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"email": "d@example.com", "action": "opportunity"}
    for bad in ("12k", -5, True, float("inf")):
        r = httpx.post(url, content=__import__("json").dumps(body | {"amount": bad}),
                       headers=auth | {"content-type": "application/json"})
        assert r.status_code == 422 and "amount" in r.json()["error"], bad
    r = httpx.post(url, json=body | {"amount": 24000}, headers=auth)
    assert r.status_code == 200 and r.json()["amount"] == 24000.0
    r = httpx.post(url, json={"email": "d@example.com", "action": "won", "amount": 25500.5},
                   headers=auth)
    assert r.status_code == 200
    with app.engine.connect() as conn:
        got = conn.execute(select(t.transitions.c.to_stage, t.transitions.c.amount)
                           .order_by(t.transitions.c.id)).all()
    assert [tuple(g) for g in got] == [("opportunity", 24000.0), ("customer", 25500.5)]
