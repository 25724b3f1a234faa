"""The store's driver path (plain tuples, SQL text) against SQLAlchemy's typed path, on both
backends: a timestamp written with `bind_time` is stored exactly as `UTCDateTime` stores it
and reads back equal through the normal path; `read_time` and `lead_fields_of` read what the
typed path reads; `insert_ids` rows match SQLAlchemy's own insert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from nurture.store import tables as t
from nurture.store.db import bind_time, executemany, fetch, is_sqlite, read_time, write_tx
from nurture.store.rows import (
    LEAD_FIELD_SQL,
    insert_ids,
    lead_field_columns,
    lead_fields,
    lead_fields_of,
)

AT = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)
# whole seconds (SQLite's isoformat would drop the fraction), microseconds, another offset
TIMES = [AT, AT + timedelta(microseconds=123456),
         datetime(2026, 3, 29, 1, 30, 0, 7, tzinfo=timezone(timedelta(hours=-5)))]


def _lead(conn, n: int) -> int:
    return conn.execute(t.leads.insert().values(
        email=f"l{n}@example.com", first_name="Zoë", company_size=40, created_at=TIMES[n % 3],
        updated_at=AT, stage_entered_at=AT, attributes={"plan": "pro", "seats": 3})
        .returning(t.leads.c.id)).scalar_one()


def _touch(i: int, lead_id: int, when: datetime) -> dict:
    return {"lead_id": lead_id, "campaign": "c", "track": "t", "step": f"s{i}", "round": 0,
            "status": "planned", "planned_at": when, "send_at": when, "updated_at": when}


def test_a_time_written_through_the_driver_reads_back_equal(migrated_engine):
    T = t.touches
    with write_tx(migrated_engine) as conn:
        lead_id = _lead(conn, 0)
        lite = is_sqlite(conn)
        conn.execute(T.insert(), [_touch(i, lead_id, w) for i, w in enumerate(TIMES)])
        executemany(conn, "INSERT INTO touches (lead_id, campaign, track, step, round, status, "
                          "planned_at, send_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(lead_id, "c", "t", f"d{i}", 0, "planned", bind_time(w, lite),
                      bind_time(w, lite), bind_time(w, lite)) for i, w in enumerate(TIMES)])
    with migrated_engine.connect() as conn:
        typed = dict(conn.execute(select(T.c.step, T.c.send_at)).all())
        raw = dict(conn.execute(text("SELECT step, send_at FROM touches")).all())
        fetched = {s: read_time(v) for s, v in fetch(conn, "SELECT step, send_at FROM touches")}
        # compared as stored: the driver path keeps SQLite's text order for `<=` filters
        later = fetch(conn, "SELECT step FROM touches WHERE send_at <= ? ORDER BY step",
                      (bind_time(AT, is_sqlite(conn)),))
    for i, w in enumerate(TIMES):
        assert typed[f"d{i}"] == typed[f"s{i}"] == w
        assert raw[f"d{i}"] == raw[f"s{i}"]  # the very same stored value
        assert fetched[f"d{i}"] == w and fetched[f"d{i}"].tzinfo == UTC
    expected = sorted(f"{p}{i}" for p in "ds" for i, w in enumerate(TIMES) if w <= AT)
    assert [r[0] for r in later] == expected


def test_a_naive_time_is_refused_as_the_typed_path_refuses_it():
    with pytest.raises(ValueError):
        bind_time(datetime(2026, 1, 1), True)
    assert bind_time(None, False) is None and read_time(None) is None


def test_lead_fields_from_driver_rows_equal_the_typed_ones(migrated_engine):
    with write_tx(migrated_engine) as conn:
        ids = [_lead(conn, n) for n in range(3)]
    with migrated_engine.connect() as conn:
        typed = {r.id: lead_fields(r) for r in conn.execute(
            select(t.leads.c.id, *lead_field_columns(t.leads)))}
        raw = {r[0]: lead_fields_of(r[1:]) for r in fetch(
            conn, f"SELECT leads.id, {LEAD_FIELD_SQL} FROM leads")}
    assert set(typed) == set(ids)
    assert raw == typed
    assert raw[ids[0]]["plan"] == "pro" and raw[ids[0]]["company_size"] == 40


def test_insert_ids_rows_equal_sqlalchemys_insert(migrated_engine):
    TR = t.transitions
    row = {"from_stage": "new", "to_stage": "nurturing", "reason": "why", "rule": None,
           "actor": "test", "note": "n", "at": TIMES[2], "handoff_id": None}
    with write_tx(migrated_engine) as conn:
        lead_id = _lead(conn, 1)
        fast = insert_ids(migrated_engine, conn, TR, [{"lead_id": lead_id, **row}] * 2)
        typed = conn.execute(TR.insert().values(lead_id=lead_id, **row)
                             .returning(TR.c.id)).scalar_one()
    with migrated_engine.connect() as conn:
        got = {r.id: r._asdict() for r in conn.execute(select(TR))}
        stored = dict(conn.execute(text("SELECT id, at FROM transitions")).all())
    for i in fast:
        assert {**got[i], "id": typed} == got[typed]
        assert stored[i] == stored[typed]
