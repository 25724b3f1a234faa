"""The webhook stores a batch and applies it in one transaction (`EventStore.ingest`): a 200
means stored and applied; if applying fails the raw batch is still kept (savepoint) and
applied event by event; if the batch cannot even be stored the answer is 503 and nothing is
left behind; stored but not applied is a 202 that later runs finish — exactly once. Through
the real app (in-process ASGI) on SQLite and PostgreSQL; failures are real database errors
raised by triggers."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import func, select, text
from webhook_helpers import ev, touch

from nurture.store import tables as t


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def arm(engine, table: str, when: str) -> None:
    """A trigger that aborts inserts into `table` whose new row matches `when` (SQL)."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text(f"CREATE TRIGGER boom_{table} BEFORE INSERT ON {table} "
                              f"WHEN {when} BEGIN SELECT RAISE(ABORT, 'boom'); END"))
        else:
            conn.execute(text(f"CREATE FUNCTION boom_{table}() RETURNS trigger AS $$ BEGIN "
                              f"IF {when} THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; "
                              "END $$ LANGUAGE plpgsql"))
            conn.execute(text(f"CREATE TRIGGER boom_{table} BEFORE INSERT ON {table} "
                              f"FOR EACH ROW EXECUTE FUNCTION boom_{table}()"))


def disarm(engine, table: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DROP TRIGGER boom_{table}" if engine.dialect.name == "sqlite"
                          else f"DROP TRIGGER boom_{table} ON {table}"))


@pytest.fixture
def hook(db_url, tmp_path, campaigns_dir, templates_dir):
    """post(batch) -> the response of POST /webhooks/sendgrid (unsigned: allowed here)."""
    from nurture.entrypoints.http.app import create_app
    from nurture.settings import Settings
    from nurture.store.db import upgrade
    from nurture.wiring import App

    app = App(Settings(database_url=db_url, campaigns_dir=campaigns_dir,
                       templates_dir=templates_dir, webhook_allow_unsigned=True,
                       secret_key="ingest-secret-0123456789", transport="outbox",
                       outbox_dir=tmp_path / "outbox"))
    upgrade(app.engine)
    asgi = create_app(app)

    async def _post(batch: list) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi),
                                     base_url="http://test") as client:
            return await client.post("/webhooks/sendgrid", content=json.dumps(batch),
                                     headers={"Content-Type": "application/json"})

    def post(batch: list) -> httpx.Response:
        return asyncio.run(_post(batch))

    post.app = app
    yield post
    app.engine.dispose()


def test_a_200_means_stored_and_applied_and_a_retry_changes_nothing(hook):
    app = hook.app
    tid = touch(app.store, "ana@example.com")
    batch = [ev("delivered", "ana@example.com", tid), ev("open", "ana@example.com", tid),
             ev("bounce", "ana@example.com", tid, reason="550 gone")]
    r = hook(batch)
    assert r.status_code == 200 and r.json()["applied"] and r.json()["new"] == 3
    assert count(app.engine, t.webhook_batches, t.webhook_batches.c.applied_at.is_not(None)) == 1
    assert count(app.engine, t.provider_events, t.provider_events.c.outcome == "applied") == 3
    r = hook(batch)
    assert r.status_code == 200 and r.json()["new"] == 0 and r.json()["duplicates"] == 3
    assert count(app.engine, t.activities) == 1 and count(app.engine, t.suppressions) == 1
    assert count(app.engine, t.provider_events) == 3 and count(app.engine, t.webhook_batches) == 2


def test_a_failed_bulk_apply_keeps_the_one_stored_batch_and_applies_event_by_event(hook):
    app = hook.app
    tid = touch(app.store, "ana@example.com")
    touch(app.store, "boom@example.com")
    arm(app.engine, "suppressions", "NEW.email = 'boom@example.com'")
    r = hook([ev("delivered", "ana@example.com", tid), ev("bounce", "boom@example.com")])
    assert r.status_code == 200 and r.json()["errors"] == 1, r.text
    batches = _rows(app.engine, t.webhook_batches)
    assert len(batches) == 1 and "event by event" in batches[0].error
    outcomes = {r.event: r.outcome for r in _rows(app.engine, t.provider_events)}
    assert outcomes == {"delivered": "applied", "bounce": "error"}
    disarm(app.engine, "suppressions")
    assert app.webhook_events.apply_pending().events_applied == 1
    assert count(app.engine, t.suppressions) == 1


def test_nothing_stored_is_a_503_and_leaves_nothing_behind(hook):
    app = hook.app
    tid = touch(app.store, "ana@example.com")
    arm(app.engine, "webhook_batches", "1 = 1")
    r = hook([ev("delivered", "ana@example.com", tid), ev("open", "ana@example.com", tid)])
    assert r.status_code == 503, r.text
    for table in (t.webhook_batches, t.provider_events, t.activities):
        assert count(app.engine, table) == 0
    assert _rows(app.engine, t.touches)[0].delivery_status is None


def test_stored_but_not_applied_is_a_202_finished_once_by_later_runs(hook):
    app = hook.app
    tid = touch(app.store, "ana@example.com")
    arm(app.engine, "provider_events", "1 = 1")  # not even one event row can be written
    batch = [ev("delivered", "ana@example.com", tid), ev("open", "ana@example.com", tid)]
    r = hook(batch)
    assert r.status_code == 202 and r.json()["retried_later"], r.text
    assert count(app.engine, t.provider_events) == 0 and count(app.engine, t.activities) == 0
    stored = _rows(app.engine, t.webhook_batches)
    assert len(stored) == 1 and stored[0].applied_at is None and "boom" in stored[0].error
    disarm(app.engine, "provider_events")
    assert app.webhook_events.apply_pending().events_applied == 2
    assert app.webhook_events.apply_pending().events_applied == 0
    assert count(app.engine, t.activities) == 1
    assert _rows(app.engine, t.touches)[0].delivery_status == "delivered"


def _rows(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(table).order_by(table.c.id)).all()
