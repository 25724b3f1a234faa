"""The funnel report counted in SQL (`funnel_report`) equals its pure reference definition
(`compute_funnel` over `load_funnel_rows`) for any store and any `as_of`, on SQLite and
PostgreSQL: random small stores with ties between transitions at one instant (written in an
order that is not their time order), leads without transitions or created straight into a
stage, handoffs in every status resolved before and after `as_of`, recycles by every kind of
rule, microsecond times (medians of an even count round to the microsecond), times before
creation (negative stays) and an `as_of` anywhere from before the first lead to after the
last row.

A transition's id is its SQLite rowid, and SQLite returns rows that tie on (lead, at) in rowid
order whatever the query says; on PostgreSQL the rows are written in an order unrelated to
their ids, so dropping the id tie-breaker from the SQL fails there."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, func, insert, select

from nurture.core.domain import LIFECYCLE_STAGES
from nurture.core.funnel import compute_funnel
from nurture.store import tables as t
from nurture.store.funnel_queries import funnel_report, load_funnel_rows
from nurture.store.funnel_sql import handoff_query, recycle_query, stage_query

T0 = datetime(2026, 11, 1, tzinfo=UTC)
# a coarse grid of instants makes ties likely; the odd microseconds make the mean of two
# middle stays land between microseconds (timedelta rounds half to even), and those past
# .9995 s are where SQLite's own date functions round to the next second (milliseconds)
TIMES = st.builds(lambda h, us: T0 + timedelta(hours=h, microseconds=us),
                  st.integers(0, 96),
                  st.sampled_from([0, 0, 1, 3, 499_999, 500_000, 999_500, 999_999]))
TIES = st.sampled_from([T0 + timedelta(hours=h) for h in (6, 12, 30)])  # shared instants
STAGES = st.sampled_from([*map(str, LIFECYCLE_STAGES), "legacy"])  # and one unknown stage
SOURCES = st.sampled_from([None, "", "website", "webinar", "partner", "(unknown)"])
# (rule, reason) of transitions: every kind the report tells apart, and near misses
RECYCLE_WHY = st.sampled_from([
    ("routing.mql.sla_hours", "sla_expired: not accepted within 48 h"),
    ("routing.sales_rejected.not_ready", "rejected by sales: not_ready; back in 30 days"),
    ("routing.sales_rejected.bad_fit", "rejected by sales: bad_fit"),
    ("routing.sales_rejected.", "rejected without a code"),
    ("routing.recycle.when.any[0]", "went cold: no engagement for 45 days"),
    ("routing.recycled", "went cold"),
    ("sales.lost", "deal lost"),
    ("sales.lost.extra", "deal lost"),
    ("manual", "sla_expired by hand"),
    ("manual", "SLA_EXPIRED is not the code"),
    ("manual", "sla_expire"),
    (None, "sla_expiredé — unicode after the prefix"),
    (None, "ümlaut reason"),
])
STATUSES = st.sampled_from(["pending", "accepted", "rejected", "expired", "cancelled"])
REASONS = st.sampled_from([None, "", "not_ready", "bad_fit", "sla_expired"])


@st.composite
def stores(draw):
    """(leads, transitions, handoffs) as insert rows; lead_id is an index into leads."""
    leads, transitions, handoffs = [], [], []
    for i in range(draw(st.integers(0, 7))):
        created = draw(TIMES)
        leads.append({"email": f"l{i}@example.com", "source": draw(SOURCES),
                      "attributes": {}, "created_at": created, "updated_at": created,
                      "lifecycle_stage": draw(STAGES),
                      "stage_entered_at": draw(st.one_of(st.just(created), TIMES))})
        for _ in range(draw(st.integers(0, 5))):
            rule, reason = draw(RECYCLE_WHY)
            transitions.append({"lead_id": i, "from_stage": draw(STAGES),
                                "to_stage": draw(STAGES), "at": draw(st.one_of(TIES, TIMES)),
                                "rule": rule, "reason": reason, "actor": "test"})
        pending_taken = False  # at most one open handoff per lead (a unique index)
        for _ in range(draw(st.integers(0, 3))):
            status = draw(STATUSES)
            if status == "pending":
                if pending_taken:
                    continue
                pending_taken = True
            h_created = draw(TIMES)
            handoffs.append({
                "lead_id": i, "owner": "ana@acme.example", "status": status,
                "rule": "routing.mql.when", "reason": "score", "created_at": h_created,
                "sla_due_at": h_created + timedelta(hours=draw(st.integers(-6, 60))),
                "resolved_at": None if status == "pending" and draw(st.booleans())
                else draw(st.one_of(st.none(), TIMES)),
                "outcome_reason": draw(REASONS)})
    # ids unrelated to time and to the order rows are written in (the physical order): ties
    # at one instant must be broken by id, not by a scan that happens to return id order
    ids = draw(st.permutations(range(1, len(transitions) + 1)))
    transitions = draw(st.permutations([{**tr, "id": i} for tr, i in zip(transitions, ids,
                                                                         strict=True)]))
    return leads, transitions, handoffs


AS_OF = st.one_of(
    TIMES, st.builds(lambda h: T0 + timedelta(hours=h), st.floats(-10, 120)),
    st.builds(lambda dt: dt.astimezone(timezone(timedelta(hours=-5))), TIMES),  # not UTC
    st.builds(lambda dt: dt.replace(tzinfo=None), TIMES))                       # naive = UTC


def write(engine, leads, transitions, handoffs) -> None:
    with engine.begin() as conn:
        for table in (t.handoffs, t.transitions, t.leads):
            conn.execute(delete(table))
        if not leads:
            return
        conn.execute(insert(t.leads), leads)
        ids = dict(conn.execute(select(t.leads.c.email, t.leads.c.id)).all())
        by_index = [ids[lead["email"]] for lead in leads]
        for table, rows in ((t.transitions, transitions), (t.handoffs, handoffs)):
            for row in rows:  # one at a time, in the list's order
                conn.execute(insert(table), {**row, "lead_id": by_index[row["lead_id"]]})


def assert_same(got: dict, want: dict) -> None:
    assert got == want
    # the same types and the same order of every mapping (by_reason, by_source, stages)
    assert json.dumps(got) == json.dumps(want)


# a stay of 3 h + 0.4 ms is 0.125000005 days, reported 0.13; read with SQLite's
# strftime('%s'), its start 00:00:00.9996 rounds to 00:00:01 and it would be 0.12
_BOUNDARY = ([{"email": "b@example.com", "source": None, "attributes": {},
               "created_at": T0 + timedelta(microseconds=999_600),
               "updated_at": T0, "lifecycle_stage": "nurturing", "stage_entered_at": T0}],
             [{"lead_id": 0, "from_stage": "new", "to_stage": "nurturing",
               "at": T0 + timedelta(hours=3, seconds=1), "rule": None, "reason": "x",
               "actor": "test", "id": 1}], [])


@example(store=_BOUNDARY, as_of=T0 + timedelta(days=1))
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(store=stores(), as_of=AS_OF)
def test_the_sql_report_equals_the_reference_definition(migrated_engine, store, as_of):
    write(migrated_engine, *store)
    assert_same(funnel_report(migrated_engine, as_of),
                compute_funnel(*load_funnel_rows(migrated_engine), as_of))


def test_the_sql_report_reads_three_queries_of_aggregates(migrated_engine):
    """Three statements, whose rows do not grow with the leads: a few per stage, status,
    source and rule."""
    def add_leads(n: int) -> None:
        with migrated_engine.begin() as conn:
            start = conn.execute(select(func.count()).select_from(t.leads)).scalar_one()
            conn.execute(insert(t.leads), [
                {"email": f"bulk{i}@example.com", "source": ("web", "ads")[i % 2],
                 "attributes": {}, "created_at": T0, "updated_at": T0,
                 "lifecycle_stage": "nurturing", "stage_entered_at": T0 + timedelta(hours=i)}
                for i in range(start, start + n)])
            ids = conn.execute(select(t.leads.c.id).order_by(t.leads.c.id.desc()).limit(n))
            rows = [{"lead_id": i, "owner": "o", "status": "pending", "rule": "r",
                     "reason": "r", "created_at": T0, "sla_due_at": T0} for (i,) in ids]
            conn.execute(insert(t.handoffs), rows)

    as_of = T0 + timedelta(days=30)

    def rows_returned() -> list[int]:
        with migrated_engine.connect() as conn:
            return [len(conn.execute(q).all()) for q in (
                stage_query(migrated_engine, as_of), handoff_query(as_of),
                recycle_query(as_of))]

    add_leads(6)
    few = rows_returned()
    add_leads(494)
    assert rows_returned() == few

    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(migrated_engine, "before_cursor_execute", record)
    try:
        report = funnel_report(migrated_engine, as_of)
    finally:
        event.remove(migrated_engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(selects) == 3, selects
    assert report["leads_by_stage"]["nurturing"] == 500
    assert report["mqls_by_source"] == {"ads": 250, "web": 250}
    # stays of 720 - i hours, i < 500: the mean of the 250th and 251st, 470.5 h
    assert report["median_days_in_stage"]["nurturing"] == 19.6
