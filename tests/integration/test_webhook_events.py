"""Provider events applied exactly once, each on its own, with precedence decided by the
database — on SQLite and PostgreSQL, with real concurrent connections."""

from __future__ import annotations

import contextlib
import json
import math
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, text, update
from webhook_helpers import NOW, TS, ev, lead, post, row, touch

from nurture.store import tables as t
from nurture.wiring import webhook_events


def rows(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(table).order_by(table.c.id)).all()


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


BAD = [
    ("timestamp 1e20", {"timestamp": 1e20}, "timestamp"),
    ("timestamp NaN", {"timestamp": math.nan}, "timestamp"),
    ("timestamp -5", {"timestamp": -5}, "timestamp"),
    ("timestamp abc", {"timestamp": "abc"}, "timestamp"),
    ("email 123", {"email": 123}, "email"),
    ("huge touch_id", {"touch_id": str(10**30)}, "touch_id"),
    ("negative touch_id", {"touch_id": -3}, "touch_id"),
    ("sg_event_id 42", {"sg_event_id": 42}, "sg_event_id"),
]


def test_bad_events_are_kept_with_their_reason_and_the_rest_applies(store):
    events = webhook_events(store.engine)
    tid = touch(store, "ana@example.com")
    lead(store, "bo@example.com")
    good = [ev("delivered", "ana@example.com", tid), ev("bounce", "bo@example.com",
                                                          reason="550 no such user")]
    bad = [ev("open", "ana@example.com", tid, eid=f"bad-{i}") | patch
           for i, (_, patch, _) in enumerate(BAD)]
    rep = post(events, bad[:4] + good[:1] + bad[4:] + good[1:] + [7, None])
    assert rep.errors == len(BAD) + 2 and rep.new == len(BAD) + 4
    t_ana = row(store.engine, t.touches, id=tid)
    assert t_ana.delivery_status == "delivered"
    assert count(store.engine, t.suppressions, t.suppressions.c.email == "bo@example.com") == 1
    errs = [r for r in rows(store.engine, t.provider_events) if r.outcome == "error"]
    assert len(errs) == len(BAD) + 2
    by_id = {r.event_id: r for r in errs}
    for i, (name, _, field) in enumerate(BAD):
        key = f"bad-{i}" if field != "sg_event_id" else None
        hit = by_id.get(key) if key else [r for r in errs if "sg_event_id" in r.error][0]
        assert hit is not None and field in hit.error, name
        assert hit.error.startswith("invalid event:")
    assert sum("must be a JSON object" in r.error for r in errs) == 2
    # no open was recorded: every open above was bad
    assert count(store.engine, t.activities) == 0
    # the whole batch is recorded (nothing is lost) and marked applied, with a note
    batch = rows(store.engine, t.webhook_batches)[0]
    assert batch.applied_at is not None and "could not be applied" in batch.error


@pytest.fixture
def boom(store):
    """A real database failure for one address: inserting its suppression aborts."""
    engine = store.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER boom BEFORE INSERT ON suppressions "
                              "WHEN NEW.email = 'boom@example.com' "
                              "BEGIN SELECT RAISE(ABORT, 'boom trigger'); END"))
        else:
            conn.execute(text("CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                              "IF NEW.email = 'boom@example.com' THEN "
                              "RAISE EXCEPTION 'boom trigger'; END IF; RETURN NEW; END "
                              "$$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER boom BEFORE INSERT ON suppressions "
                              "FOR EACH ROW EXECUTE FUNCTION boom()"))

    def disarm():
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER boom" if engine.dialect.name == "sqlite"
                              else "DROP TRIGGER boom ON suppressions"))
    return disarm


def test_an_event_that_fails_to_apply_is_kept_and_retried_by_later_runs(store, boom):
    events = webhook_events(store.engine)
    tid = touch(store, "ana@example.com")
    lead(store, "boom@example.com")
    batch = [ev("delivered", "ana@example.com", tid),
             ev("bounce", "boom@example.com", reason="550 gone"),
             ev("open", "ana@example.com", tid)]
    rep = post(events, batch, bulk=False)
    assert rep.errors == 1 and rep.activities == 1
    assert row(store.engine, t.touches, id=tid).delivery_status == "delivered"
    failed = row(store.engine, t.provider_events, outcome="error")
    assert failed.email == "boom@example.com" and "boom trigger" in failed.error
    assert failed.attempts == 1

    # still broken: each later run counts an attempt, then gives up and leaves it listed
    for _ in range(3):
        assert events.apply_pending(max_attempts=4).events_failed == 1
    pending = events.apply_pending(max_attempts=4)
    assert pending.events_failed == 0 and pending.given_up == 1
    listed = events.failures(max_attempts=4)["events"]
    assert [(e["event"], e["attempts"], e["given_up"]) for e in listed] == [("bounce", 4, True)]

    # fixed (and a higher limit): the next run applies it, exactly once
    boom()
    assert events.apply_pending(max_attempts=6).events_applied == 1
    assert events.apply_pending(max_attempts=6).events_applied == 0
    assert row(store.engine, t.provider_events, email="boom@example.com").outcome == "applied"
    assert count(store.engine, t.suppressions) == 1
    assert count(store.engine, t.transitions, t.transitions.c.rule == "suppression.bounce") == 1
    assert count(store.engine, t.activities) == 1


def test_a_stored_batch_never_applied_is_applied_once_by_later_runs(store):
    events = webhook_events(store.engine)
    tid = touch(store, "ana@example.com")
    batch = [ev("open", "ana@example.com", tid), ev("click", "ana@example.com", tid,
                                                    url="https://x.example")]
    events.store_batch(json.dumps(batch), True, len(batch))  # then kill -9
    results = []
    threads = [threading.Thread(target=lambda: results.append(events.apply_pending()))
               for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(r.events_applied for r in results) == 2
    assert count(store.engine, t.activities) == 2
    assert rows(store.engine, t.webhook_batches)[0].applied_at is not None
    assert events.apply_pending().batches == 0


def test_a_batch_that_keeps_failing_is_given_up_after_the_limit(store):
    """Attempts are counted before each try: even a batch that killed the process every
    time (nothing recorded afterwards) stops being retried, and stays listed."""
    events = webhook_events(store.engine)
    batch_id = events.store_batch("[]", True, 0)  # attempt 1 (the webhook's), then kill -9
    B = t.webhook_batches
    for n in (2, 3):
        with store.engine.begin() as conn:  # what apply_pending does first; then kill -9
            conn.execute(update(B).where(B.c.id == batch_id).values(attempts=B.c.attempts + 1))
        assert row(store.engine, B, id=batch_id).attempts == n
    assert events.apply_pending(max_attempts=3).batches == 0
    assert events.failures(max_attempts=3)["batches"][0]["given_up"] is True
    assert events.apply_pending(max_attempts=4).batches == 1  # a higher limit: one more try
    assert row(store.engine, B, id=batch_id).applied_at is not None


def test_processed_during_result_recording_never_undoes_sent(store):
    """The run's CAS (sending -> sent) lands between the event's read and its write.
    PostgreSQL only: on SQLite every writer takes the write lock when it begins (BEGIN
    IMMEDIATE), so nothing can land inside the event application's transaction."""
    if store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): no interleaving possible")
    events = webhook_events(store.engine)
    tid = touch(store, "ana@example.com", status="sending")
    engine = store.engine
    fired = []

    def run_records_sent(conn, cursor, statement, *_):
        if not fired and "INSERT INTO PROVIDER_EVENTS" in statement.upper():
            fired.append(True)
            with engine.begin() as other:
                res = other.execute(text("UPDATE touches SET status='sent' "
                                         "WHERE id=:i AND status='sending'"), {"i": tid})
                assert res.rowcount == 1

    event.listen(engine, "before_cursor_execute", run_records_sent)
    try:
        post(events, [ev("processed", "ana@example.com", tid),
                      ev("delivered", "ana@example.com", tid)])
    finally:
        event.remove(engine, "before_cursor_execute", run_records_sent)
    assert fired
    r = row(engine, t.touches, id=tid)
    assert (r.status, r.delivery_status) == ("sent", "delivered")


def test_events_while_sending_keep_delivery_and_leave_status_to_the_run(store):
    events = webhook_events(store.engine)
    tid = touch(store, "ana@example.com", status="sending")
    rep = post(events, [ev("processed", "ana@example.com", tid),
                        ev("delivered", "ana@example.com", tid)])
    assert rep.settled == 0
    r = row(store.engine, t.touches, id=tid)
    assert r.status == "sending" and r.delivery_status == "delivered"
    with store.engine.begin() as conn:  # the run records its result (compare-and-set)
        assert conn.execute(text("UPDATE touches SET status='sent' WHERE id=:i AND "
                                 "status='sending'"), {"i": tid}).rowcount == 1
    r = row(store.engine, t.touches, id=tid)
    assert (r.status, r.delivery_status) == ("sent", "delivered")
    assert r.delivered_at is not None and r.provider_message_id == "m1"


def test_an_event_seen_while_sending_settles_the_touch_if_its_run_died(store):
    events = webhook_events(store.engine)
    tid = touch(store, "ana@example.com", status="sending")
    post(events, [ev("processed", "ana@example.com", tid)])
    with store.engine.begin() as conn:  # the run was kill -9'd; a newer run takes over
        conn.execute(text("UPDATE touches SET status='in_doubt' WHERE id=:i AND "
                          "status='sending'"), {"i": tid})
    assert events.apply_pending().settled == 1
    r = row(store.engine, t.touches, id=tid)
    assert (r.status, r.sent_at is not None) == ("sent", True)
    assert events.apply_pending().settled == 0


def test_in_doubt_and_failed_touches_are_settled_sent_but_sent_never_changes(store):
    events = webhook_events(store.engine)
    doubt = touch(store, "ana@example.com", status="in_doubt", error="no answer")
    failed = touch(store, "bo@example.com", status="failed", error="gave up")
    planned = touch(store, "cy@example.com", status="planned")
    rep = post(events, [ev("processed", "ana@example.com", doubt),
                        ev("dropped", "bo@example.com", failed, reason="Invalid SMTPAPI"),
                        ev("delivered", "cy@example.com", planned)])
    assert rep.settled == 2
    a, b, c = (row(store.engine, t.touches, id=i) for i in (doubt, failed, planned))
    assert (a.status, a.error, a.sent_at is not None) == ("sent", None, True)
    assert (b.status, b.delivery_status) == ("sent", "dropped")
    assert b.error.startswith("dropped: Invalid SMTPAPI")
    assert c.status == "planned"  # only in doubt / failed are settled by an event


def test_out_of_order_delivered_then_deferred_keeps_delivered(store):
    events = webhook_events(store.engine)
    tid = touch(store, "ana@example.com")
    post(events, [ev("delivered", "ana@example.com", tid, ts=TS + 60)])
    post(events, [ev("deferred", "ana@example.com", tid, ts=TS, response="421 later")])
    r = row(store.engine, t.touches, id=tid)
    assert r.delivery_status == "delivered"
    assert r.delivered_at == datetime.fromtimestamp(TS + 60, UTC)
    assert r.last_event_at == datetime.fromtimestamp(TS + 60, UTC)
    post(events, [ev("bounce", "ana@example.com", tid, ts=TS + 120, reason="550 gone")])
    r = row(store.engine, t.touches, id=tid)
    assert r.delivery_status == "bounced" and r.error.startswith("bounced: 550")
    assert r.last_event_at == datetime.fromtimestamp(TS + 120, UTC)


def test_delivered_and_open_applied_at_once_never_lose_delivered(store):
    """Two connections apply a `delivered` and an `open` batch for the same touch at the
    same moment (both past their reads before either writes), many times."""
    events = webhook_events(store.engine)
    engine = store.engine
    tids = [touch(store, f"p{i}@example.com") for i in range(15)]
    for tid in tids:
        gate = threading.Barrier(2, timeout=5)
        local = threading.local()

        def hold(conn, cursor, statement, *_, gate=gate, local=local):
            if "INSERT INTO PROVIDER_EVENTS" in statement.upper() \
                    and getattr(local, "armed", False):
                local.armed = False
                with contextlib.suppress(threading.BrokenBarrierError):
                    gate.wait()

        def apply(kind, tid=tid, local=local):
            local.armed = True
            post(events, [ev(kind, f"p{tids.index(tid)}@example.com", tid)])

        event.listen(engine, "before_cursor_execute", hold)
        try:
            threads = [threading.Thread(target=apply, args=(k,)) for k in ("delivered", "open")]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        finally:
            event.remove(engine, "before_cursor_execute", hold)
    with engine.connect() as conn:
        got = dict(conn.execute(select(t.touches.c.id, t.touches.c.delivery_status)).all())
    assert [got[tid] for tid in tids] == ["delivered"] * len(tids)
    assert count(engine, t.activities) == len(tids)


def test_every_lead_write_bumps_the_version(store):
    events = webhook_events(store.engine)
    tid = touch(store, "ana@example.com")
    lead(store, "bo@example.com")

    def version(email):
        return row(store.engine, t.leads, email=email).version

    before = version("ana@example.com"), version("bo@example.com")
    post(events, [ev("open", "ana@example.com", tid)])
    assert version("ana@example.com") == before[0] + 1
    assert events.unsubscribe("bo@example.com", "one-click", campaign="c")
    assert version("bo@example.com") == before[1] + 1
    assert not events.unsubscribe("bo@example.com", "one-click")  # nothing new: no write
    assert version("bo@example.com") == before[1] + 1


def test_concurrent_unsubscribes_audit_once(store):
    events = webhook_events(store.engine)
    lead(store, "ana@example.com")
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        events.unsubscribe("ana@example.com", "one-click"))) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [False, False, False, True]
    assert count(store.engine, t.transitions) == 1


def test_scheduled_sends_to_suppressed_addresses_are_listed_and_cancelled_by_cas(store):
    events = webhook_events(store.engine)
    later = NOW + timedelta(hours=5)
    scheduled = touch(store, "ana@example.com", provider_batch_id="B1")
    other = touch(store, "bo@example.com", provider_batch_id="B2")
    with store.engine.begin() as conn:
        conn.execute(update(t.touches).values(send_at=later))
    assert events.scheduled_to_cancel() == []
    events.unsubscribe("ana@example.com", "one-click")
    assert events.scheduled_to_cancel() == [(scheduled, "B1")]
    calls = []

    def failing(batch_id):
        calls.append(batch_id)
        raise ConnectionError("network down")

    assert events.cancel_scheduled(failing)[0] == 0
    assert row(store.engine, t.touches, id=scheduled).status == "sent"
    assert events.cancel_scheduled(calls.append) == (1, [])
    r = row(store.engine, t.touches, id=scheduled)
    assert r.status == "cancelled" and "cancelled at SendGrid" in r.error
    assert row(store.engine, t.touches, id=other).status == "sent"
    assert calls == ["B1", "B1"] and events.scheduled_to_cancel() == []
    # SendGrid sent it anyway (cancelled too late): the ledger tells the truth
    post(events, [ev("delivered", "ana@example.com", scheduled)])
    r = row(store.engine, t.touches, id=scheduled)
    assert r.status == "sent" and "sent after all" in r.error


ROUNDS = 4


def test_concurrent_batches_about_the_same_touches_apply_in_bulk(store):
    """SendGrid posts several batches at once, about the same touches in any order. Each
    applies in one transaction: none deadlocks into the event-by-event fallback (on
    PostgreSQL they take turns for the shared rows), and every event counts once."""
    events = webhook_events(store.engine)
    tids = [touch(store, f"c{i}@example.com") for i in range(300)]
    kinds = ("processed", "delivered", "open", "click")
    errors: list[BaseException] = []
    gate = threading.Barrier(len(kinds), timeout=10)

    def send(k: int) -> None:
        try:
            for rnd in range(ROUNDS):
                order = random.Random(k * 100 + rnd).sample(tids, len(tids))  # any order
                batch = [ev(kinds[k], f"c{tids.index(tid)}@example.com", tid,
                            eid=f"{kinds[k]}-{rnd}-{tid}") for tid in order]
                gate.wait()
                post(events, batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            gate.abort()

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(kinds))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert count(store.engine, t.provider_events) == len(kinds) * ROUNDS * len(tids)
    with store.engine.connect() as conn:
        got = set(conn.execute(select(t.touches.c.delivery_status)).scalars())
    assert got == {"delivered"}
