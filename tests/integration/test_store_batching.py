"""The store's batched writes on both backends: ids handed back by `insert_ids` are the rows'
own ids, in order, whether SQLite numbers them explicitly or PostgreSQL returns them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.rows import insert_ids

AT = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)


def _lead(conn, n: int) -> int:
    return conn.execute(t.leads.insert().values(
        email=f"l{n}@example.com", created_at=AT, updated_at=AT, stage_entered_at=AT,
        attributes={}).returning(t.leads.c.id)).scalar_one()


def _transitions(lead_id: int, n: int) -> list[dict]:
    return [{"lead_id": lead_id, "from_stage": "new", "to_stage": "nurturing",
             "reason": f"r{i}", "actor": "test", "at": AT} for i in range(n)]


def test_insert_ids_are_the_rows_ids_in_order(migrated_engine):
    with write_tx(migrated_engine) as conn:
        lead_id = _lead(conn, 1)
        first = insert_ids(migrated_engine, conn, t.transitions, _transitions(lead_id, 3))
    with write_tx(migrated_engine) as conn:  # a later batch continues after the first
        second = insert_ids(migrated_engine, conn, t.transitions, _transitions(lead_id, 250))
    with migrated_engine.connect() as conn:
        got = dict(conn.execute(select(t.transitions.c.id, t.transitions.c.reason)).all())
    assert len(set(first + second)) == 253
    assert min(second) > max(first)
    assert [got[i] for i in first] == ["r0", "r1", "r2"]
    assert [got[i] for i in second] == [f"r{i}" for i in range(250)]
