"""Rows written through `nurture.store.fast_sql` (raw DBAPI, set-based) read back equal
through the normal SQLAlchemy path, on SQLite and PostgreSQL: timestamps (UTCDateTime's own
storage format), JSON, NULLs, and ON CONFLICT DO NOTHING … RETURNING only the new rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select

from nurture.store import tables as t
from nurture.store.fast_sql import FastSQL, read_ts

NOW = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
COLS = ("provider", "event_id", "batch_id", "event", "email", "touch_id", "lead_id",
        "occurred_at", "outcome", "error", "attempts", "payload")
KINDS = ("text", "text", "int", "text", "text", "int", "int", "ts", "text", "text", "int",
         "json")


def _row(i: int, when: datetime) -> tuple:
    return ("sendgrid", f"ev{i}", None, "open", f"a{i}@example.com", i or None, None, when,
            "applied", None if i % 2 else "oops", 1, {"i": i, "props": {"x": [1, "é"]}})


def test_rows_written_raw_read_back_equal_through_sqlalchemy(migrated_engine):
    # a non-UTC offset and a whole second (no microseconds) must store as SQLAlchemy does
    times = [NOW, NOW.astimezone(timezone(timedelta(hours=-5))),
             NOW.replace(microsecond=0), NOW + timedelta(days=400)]
    rows = [_row(i, times[i % len(times)]) for i in range(7)]
    with migrated_engine.begin() as conn:
        got = dict(FastSQL(conn).insert("provider_events", COLS, KINDS, rows,
                                        returning="event_id, id"))
        assert set(got) == {f"ev{i}" for i in range(7)}
        # the same through SQLAlchemy, for comparing the stored text/values themselves
        conn.execute(insert(t.provider_events), [
            dict(zip(COLS, r, strict=True)) | {"event_id": "sa-" + r[1]} for r in rows])
    with migrated_engine.connect() as conn:
        back = {r.event_id: r for r in conn.execute(select(t.provider_events))}
        raw = {r[0]: r[1] for r in conn.exec_driver_sql(
            "SELECT event_id, occurred_at FROM provider_events")}
    for r in rows:
        mine, theirs = back[r[1]], back["sa-" + r[1]]
        for col, value in zip(COLS, r, strict=True):
            if col != "event_id":
                assert getattr(mine, col) == getattr(theirs, col) == value, col
        assert mine.occurred_at.tzinfo is not None
        # stored identically (same text on SQLite: comparisons in SQL stay consistent)
        assert raw[r[1]] == raw["sa-" + r[1]]
        assert read_ts(raw[r[1]]) == r[7]


def test_insert_returns_only_the_rows_it_inserted(migrated_engine):
    with migrated_engine.begin() as conn:
        fast = FastSQL(conn)
        first = fast.insert("provider_events", COLS, KINDS, [_row(1, NOW), _row(2, NOW)],
                            returning="event_id")
        again = fast.insert("provider_events", COLS, KINDS,
                            [_row(2, NOW), _row(3, NOW)], returning="event_id")
    assert sorted(first) == [("ev1",), ("ev2",)]
    assert again == [("ev3",)]


def test_naive_datetime_refused(migrated_engine):
    with migrated_engine.begin() as conn, pytest.raises(ValueError):
        FastSQL(conn).insert("provider_events", COLS, KINDS,
                             [_row(1, NOW.replace(tzinfo=None))])


def test_many_rows_split_under_sqlite_parameter_cap(migrated_engine):
    rows = [_row(i, NOW) for i in range(1, 5001)]  # 60,000 parameters on SQLite
    with migrated_engine.begin() as conn:
        got = FastSQL(conn).insert("provider_events", COLS, KINDS, rows, returning="id")
        assert len(got) == 5000
        assert len(FastSQL(conn).select_in("id", "provider_events", "id",
                                           [g[0] for g in got])) == 5000
