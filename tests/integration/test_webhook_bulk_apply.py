"""The bulk webhook apply path (issue #13): fresh event rows recorded with their final
outcome by the applying transaction, audit transitions written in one statement, settle and
late-send CAS only for touches that could match — on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import func, select, update
from webhook_helpers import NOW, TS, ev, lead, post, row, touch

from nurture.store import tables as t
from nurture.wiring import webhook_events


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()




def snapshot(engine) -> dict:
    """Everything a webhook batch can change."""
    with engine.connect() as conn:
        return {name: conn.execute(select(table).order_by(table.c[key])).all()
                for name, table, key in (
                    ("touches", t.touches, "id"), ("leads", t.leads, "id"),
                    ("suppressions", t.suppressions, "email"),
                    ("transitions", t.transitions, "id"), ("activities", t.activities, "id"),
                    ("provider_events", t.provider_events, "id"))}


def test_fresh_rows_are_recorded_applied_once_and_a_retry_changes_nothing(store):
    events = webhook_events(store.engine)
    tids = [touch(store, f"p{i}@example.com") for i in range(6)]
    lead(store, "nobody-touched@example.com")
    batch = [ev("delivered", f"p{i}@example.com", tid) for i, tid in enumerate(tids)]
    batch += [ev("open", "p0@example.com", tids[0], ts=TS + 60),
              ev("click", "p1@example.com", tids[1], ts=TS + 120),
              ev("bounce", "p2@example.com", tids[2], ts=TS + 5, reason="550 no such user"),
              ev("spamreport", "p3@example.com", tids[3], ts=TS + 90),
              ev("unsubscribe", "p4@example.com", tids[4], ts=TS + 90),
              ev("open", "nobody-touched@example.com", ts=TS + 30),   # lead by address
              ev("open", "stranger@example.com", ts=TS + 30),         # unmatched
              ev("weird_kind", "p5@example.com", tids[5])]           # ignored
    batch.append(dict(batch[0]))                                     # a repeat in the batch
    rep = post(events, batch)
    assert (rep.new, rep.duplicates, rep.errors) == (len(batch) - 1, 1, 0)
    assert rep.suppressed == 3 and rep.unmatched == 1
    with store.engine.connect() as conn:
        outcomes = {r.event_id: (r.outcome, r.attempts) for r in
                    conn.execute(select(t.provider_events)).all()}
    assert set(outcomes.values()) <= {("applied", 1), ("unmatched", 1), ("ignored", 1)}
    assert outcomes[batch[-2]["sg_event_id"]] == ("ignored", 1)
    assert outcomes[ev("open", "stranger@example.com", ts=TS + 30)["sg_event_id"]] \
        == ("unmatched", 1)
    assert row(store.engine, t.touches, id=tids[2]).delivery_status == "bounced"
    assert row(store.engine, t.touches, id=tids[0]).delivery_status == "delivered"
    before = snapshot(store.engine)
    again = post(events, batch)                       # SendGrid retries the same batch
    assert (again.new, again.duplicates, again.suppressed, again.activities) \
        == (0, len(batch), 0, 0)
    assert snapshot(store.engine) == before


def test_each_new_suppression_is_audited_once_with_the_leads_stage(store):
    events = webhook_events(store.engine)
    tids = [touch(store, f"s{i}@example.com") for i in range(4)]
    with store.engine.begin() as conn:
        conn.execute(update(t.leads).where(t.leads.c.email == "s1@example.com")
                     .values(lifecycle_stage="engaged"))
    batch = [ev("bounce", "s0@example.com", tids[0], reason="550 gone"),
             ev("spamreport", "s1@example.com", tids[1]),
             ev("unsubscribe", "s2@example.com", tids[2]),
             ev("dropped", "s3@example.com", tids[3], reason="Bounced Address"),
             ev("bounce", "s0@example.com", tids[0], ts=TS + 9, reason="550 again")]
    rep = post(events, batch)
    assert rep.suppressed == 4
    with store.engine.connect() as conn:
        audit = conn.execute(select(t.transitions.c.lead_id, t.transitions.c.from_stage,
                                    t.transitions.c.to_stage, t.transitions.c.rule,
                                    t.leads.c.email)
                             .join(t.leads, t.leads.c.id == t.transitions.c.lead_id)
                             .order_by(t.leads.c.email)).all()
    assert [(a.email, a.rule) for a in audit] == [
        ("s0@example.com", "suppression.bounce"), ("s1@example.com", "suppression.spamreport"),
        ("s2@example.com", "suppression.unsubscribe"), ("s3@example.com", "suppression.bounce")]
    s1 = next(a for a in audit if a.email == "s1@example.com")
    assert s1.from_stage == s1.to_stage == "engaged"
    # a new batch about addresses already suppressed audits nothing again
    post(events, [ev("spamreport", "s1@example.com", tids[1], eid="another-spam")])
    assert count(store.engine, t.transitions) == 4


def test_settling_and_late_sends_among_many_plain_sent_touches(store):
    events = webhook_events(store.engine)
    sent = [touch(store, f"x{i}@example.com") for i in range(20)]
    doubt = touch(store, "doubt@example.com", status="in_doubt")
    failed = touch(store, "failed@example.com", status="failed")
    late = touch(store, "late@example.com", status="cancelled", provider_batch_id="b-1")
    plain_cancel = touch(store, "nobatch@example.com", status="cancelled")
    batch = [ev("delivered", f"x{i}@example.com", tid) for i, tid in enumerate(sent)]
    batch += [ev("processed", "doubt@example.com", doubt),
              ev("delivered", "failed@example.com", failed),
              ev("delivered", "late@example.com", late),
              ev("delivered", "nobatch@example.com", plain_cancel)]
    rep = post(events, batch)
    assert rep.settled == 2
    assert {row(store.engine, t.touches, id=i).status for i in sent} == {"sent"}
    assert row(store.engine, t.touches, id=doubt).status == "sent"
    assert row(store.engine, t.touches, id=failed).status == "sent"
    late_row = row(store.engine, t.touches, id=late)
    assert late_row.status == "sent" and "sent after all" in late_row.error
    assert row(store.engine, t.touches, id=plain_cancel).status == "cancelled"


def test_precedence_and_failure_text_across_batches(store):
    events = webhook_events(store.engine)
    tid = touch(store, "prec@example.com")
    post(events, [ev("deferred", "prec@example.com", tid, response="try later")])
    assert row(store.engine, t.touches, id=tid).delivery_status == "deferred"
    post(events, [ev("bounce", "prec@example.com", tid, ts=TS + 10, reason="550 no user")])
    r = row(store.engine, t.touches, id=tid)
    assert r.delivery_status == "bounced" and "550 no user" in r.error
    # a weaker, later delivery never downgrades it nor clears the failure text
    post(events, [ev("delivered", "prec@example.com", tid, ts=TS + 20)])
    r = row(store.engine, t.touches, id=tid)
    assert r.delivery_status == "bounced" and "550 no user" in r.error
    assert r.delivered_at is not None


def test_a_batch_left_pending_by_an_earlier_attempt_is_claimed_once(store):
    """Rows an earlier attempt recorded `pending` under the same batch are applied by the
    CAS claim, exactly once, even when the batch is applied twice."""
    events = webhook_events(store.engine)
    tid = touch(store, "pend@example.com")
    batch = [ev("delivered", "pend@example.com", tid), ev("open", "pend@example.com", tid,
                                                          ts=TS + 60)]
    batch_id = events.store_batch(json.dumps(batch), False, len(batch))
    st = events.store
    parsed = events.parser.parse_events(batch)
    with store.engine.begin() as conn:     # what the fallback records before applying
        st.insert_event_rows(conn, st.event_rows(batch_id, parsed, NOW))
    rep = events.apply_batch(batch_id, batch)
    assert (rep.new, rep.activities) == (2, 1)
    with store.engine.connect() as conn:  # closed: a leaked one blocks the schema's drop
        outcomes = {r.outcome for r in conn.execute(select(t.provider_events)).all()}
    assert outcomes == {"applied"}
    rep2 = events.apply_batch(batch_id, batch)
    assert (rep2.new, rep2.activities) == (0, 0)
    assert count(store.engine, t.activities) == 1
