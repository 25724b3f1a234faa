"""The webhook's bulk writes straight through the driver (executemany over tuples on SQLite,
COPY into a staging table on PostgreSQL) store exactly what SQLAlchemy's own path stores —
times in `UTCDateTime`'s format, JSON, NULLs — and report only the rows they inserted, on
both backends. Also: a click soon after a delivery (or send) stored by an earlier batch is a
link scanner's (the touch's times are read only for clicks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError
from webhook_helpers import TS, ev, lead, post, touch

from nurture.store import tables as t
from nurture.store.db import IN_CHUNK, read_time, write_tx
from nurture.store.event_records import _EVENT_COLS
from nurture.store.events import EventStore
from nurture.wiring import webhook_events

NOW = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def _row(i: int, when: datetime, batch_id: int | None = None) -> tuple:
    return ("sendgrid", f"ev{i}", batch_id, "open", f"a{i}@example.com", i or None, None,
            when, "applied", None if i % 2 else "oops", 1,
            {"i": i, "properties": {"x": [1, "é", None], "big": 2**53}, "detail": "ü\u2028"})


def test_rows_written_raw_read_back_equal_through_sqlalchemy(migrated_engine):
    # a non-UTC offset and a whole second (no microseconds) must store as SQLAlchemy does
    times = [NOW, NOW.astimezone(timezone(timedelta(hours=-5))),
             NOW.replace(microsecond=0), NOW + timedelta(days=400)]
    rows = [_row(i, times[i % len(times)]) for i in range(7)]
    es = EventStore(migrated_engine)
    with write_tx(migrated_engine) as conn:
        got = es.record_event_rows(conn, rows)
        # the same through SQLAlchemy, for comparing the stored text/values themselves
        es.insert_event_rows(conn, [(r[0], "sa-" + r[1], *r[2:]) for r in rows])
    with migrated_engine.connect() as conn:
        back = {r.event_id: r for r in conn.execute(select(t.provider_events))}
        raw = {r[0]: r[1] for r in conn.exec_driver_sql(
            "SELECT event_id, occurred_at FROM provider_events")}
    assert got == {r[1]: back[r[1]].id for r in rows}
    for r in rows:
        mine, theirs = back[r[1]], back["sa-" + r[1]]
        for col, value in zip(_EVENT_COLS, r, strict=True):
            if col != "event_id":
                assert getattr(mine, col) == getattr(theirs, col) == value, col
        assert mine.occurred_at.tzinfo is not None
        # stored identically (same text on SQLite: comparisons in SQL stay consistent)
        assert raw[r[1]] == raw["sa-" + r[1]]
        assert read_time(raw[r[1]]) == r[7]


def test_only_the_rows_inserted_here_are_reported_each_id_once(migrated_engine):
    es = EventStore(migrated_engine)
    with write_tx(migrated_engine) as conn:
        first = es.record_event_rows(conn, [_row(1, NOW), _row(2, NOW), _row(1, NOW)])
    with write_tx(migrated_engine) as conn:
        again = es.record_event_rows(conn, [_row(2, NOW), _row(3, NOW), _row(3, NOW)])
        assert es.record_event_rows(conn, [_row(3, NOW)]) == {}
    assert sorted(first) == ["ev1", "ev2"] and sorted(again) == ["ev3"]
    with migrated_engine.connect() as conn:
        ids = dict(conn.execute(select(t.provider_events.c.event_id, t.provider_events.c.id)
                                ).all())
    assert ids == first | again


def test_naive_datetime_refused(migrated_engine):
    es = EventStore(migrated_engine)
    with pytest.raises((ValueError, StatementError)), write_tx(migrated_engine) as conn:
        es.record_event_rows(conn, [_row(1, NOW.replace(tzinfo=None))])


def test_more_rows_than_one_sqlite_in_list(migrated_engine):
    es = EventStore(migrated_engine)
    stored_first = range(IN_CHUNK + 1, IN_CHUNK + 101)  # in the second IN list below
    with write_tx(migrated_engine) as conn:
        es.record_event_rows(conn, [_row(i, NOW) for i in stored_first])
    rows = [_row(i, NOW) for i in range(1, IN_CHUNK + 1001)]
    with write_tx(migrated_engine) as conn:
        got = es.record_event_rows(conn, rows)
    assert sorted(got) == sorted(f"ev{i}" for i in range(1, IN_CHUNK + 1001)
                                 if i not in stored_first)
    with migrated_engine.connect() as conn:
        stored = dict(conn.execute(select(t.provider_events.c.event_id,
                                          t.provider_events.c.id)).all())
    assert len(stored) == IN_CHUNK + 1000 and all(stored[k] == v for k, v in got.items())


def test_a_click_soon_after_a_stored_delivery_or_send_is_a_scanners(store):
    """The touch's delivery (else send) time comes from the database, not the batch."""
    events = webhook_events(store.engine)
    soon, late = touch(store, "ana@example.com"), touch(store, "bo@example.com")
    unsent = touch(store, "cy@example.com")  # sent two hours ago, never delivered
    post(events, [ev("delivered", "ana@example.com", soon, ts=TS),
                  ev("delivered", "bo@example.com", late, ts=TS)])
    with store.engine.connect() as conn:
        sent_at = conn.execute(select(t.touches.c.sent_at).where(t.touches.c.id == unsent)
                               ).scalar_one()
    lead(store, "dee@example.com")  # a click known only by its address: no touch times
    rep = post(events, [ev("click", "dee@example.com", ts=TS + 1, sg_message_id="dee.f1"),
                        ev("click", "ana@example.com", soon, ts=TS + 3),
                        ev("click", "bo@example.com", late, ts=TS + 600),
                        ev("click", "cy@example.com", unsent,
                           ts=int(sent_at.timestamp()) + 2)])
    assert rep.scanner_clicks == 2
    with store.engine.connect() as conn:
        kinds = dict(conn.execute(select(t.leads.c.email, t.activities.c.type).join(
            t.leads, t.leads.c.id == t.activities.c.lead_id)).all())
    assert kinds == {"dee@example.com": "email_click", "ana@example.com": "email_scanner_click",
                     "bo@example.com": "email_click", "cy@example.com": "email_scanner_click"}


def test_a_message_id_is_filled_in_once_and_never_replaced(store):
    """Touches with and without a stored message id take different statements on SQLite."""
    events = webhook_events(store.engine)
    known = touch(store, "ana@example.com", provider_message_id="orig")
    blank = touch(store, "bo@example.com")
    post(events, [ev("delivered", "ana@example.com", known, sg_message_id="new.filter1"),
                  ev("delivered", "bo@example.com", blank, sg_message_id="first.filter1")])
    post(events, [ev("open", "bo@example.com", blank, sg_message_id="second.filter1")])
    with store.engine.connect() as conn:
        mids = dict(conn.execute(select(t.touches.c.id, t.touches.c.provider_message_id)
                                 ).all())
        status = dict(conn.execute(select(t.touches.c.id, t.touches.c.delivery_status)).all())
    assert mids == {known: "orig", blank: "first"}
    assert status == {known: "delivered", blank: "delivered"}
