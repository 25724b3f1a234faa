"""The lead store against real databases (a SQLite file and a PostgreSQL schema): migrations,
upserts, activity de-duplication, the send ledger's constraints and claims, suppressions and
the due index the daily cycle reads through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from nurture.adapters.delivery.memory import MemoryTransport
from nurture.core.domain import Decision, PlannedTouch
from nurture.core.rendering import Renderer
from nurture.services.cycle import SendContext, plan_chunk, run_cycle, send_chunk
from nurture.services.ingest import import_leads_csv
from nurture.store import tables as t
from nurture.store.db import current_revision, head_revision, is_migrated, make_engine, upgrade
from nurture.store.store import LeadStore

AS_OF = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)  # a Monday, before the 09:00 send window
CORE_TABLES = {"leads", "campaign_states", "activities", "touches", "transitions", "handoffs",
               "suppressions", "counters", "kv", "runs", "lead_events"}
# migrations must create exactly what nurture.store.tables declares
EXPECTED_TABLES = set(t.metadata.tables) | {"alembic_version"}


def lead(email, **kw):
    base = {"email": email, "first_name": email.split("@")[0].title(), "timezone": "UTC",
            "source": "website", "company": "Initech", "title": "Marketing Manager",
            "company_size": 40, "industry": "retail", "created_at": AS_OF - timedelta(days=3)}
    return base | kw


def act(ext, email, typ="page_view", when=AS_OF - timedelta(hours=1)):
    return {"id": ext, "email": email, "type": typ, "occurred_at": when, "properties": {}}


def count(store, table, *where) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def lead_row(store, email):
    with store.engine.connect() as conn:
        return conn.execute(select(t.leads).where(t.leads.c.email == email)).one()


def ids_of(store, *emails) -> dict[str, int]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(t.leads.c.email, t.leads.c.id)
                                 .where(t.leads.c.email.in_(emails))).all())


def all_range(store) -> tuple[int, int]:
    with store.engine.connect() as conn:
        return conn.execute(select(func.min(t.leads.c.id), func.max(t.leads.c.id))).one()


def send_context(rules, templates_dir, transport):
    return SendContext(rules=rules, renderer=Renderer(templates_dir), transport=transport,
                       secret="s" * 32, public_url="https://nurture.example")


def snapshot_emails(store, rules, as_of) -> set[str]:
    """The leads the cycle would load at `as_of`, through its own chunking and loading."""
    points = {k: v[0] for k, v in rules.scores.points.items()}
    out = set()
    for lo, hi, _ in store.cycle_ranges(as_of, chunk_size=100):
        out.update(s.email for s in store.load_snapshots(lo, hi, as_of, rules.horizon_days,
                                                         points, "UTC"))
    return out


# -- migrations -----------------------------------------------------------------------------
def test_upgrade_creates_every_table_and_is_idempotent(db_url):
    engine = make_engine(db_url)
    try:
        assert not is_migrated(engine)
        upgrade(engine)
        assert CORE_TABLES < EXPECTED_TABLES
        assert set(inspect(engine).get_table_names()) == EXPECTED_TABLES
        assert current_revision(engine) == head_revision() is not None
        store = LeadStore(engine)
        store.upsert_leads([lead("keep@example.com")])

        upgrade(engine)  # a second run changes nothing and loses nothing
        assert set(inspect(engine).get_table_names()) == EXPECTED_TABLES
        assert is_migrated(engine)
        assert count(store, t.leads) == 1
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                (head_revision(),)]
    finally:
        engine.dispose()


def test_schema_has_the_ledger_and_identity_constraints(migrated_engine):
    insp = inspect(migrated_engine)
    uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("touches")}
    assert ("lead_id", "campaign", "step", "round") in uniques
    assert ("email",) in {tuple(u["column_names"]) for u in insp.get_unique_constraints("leads")}
    assert ("external_id",) in {tuple(u["column_names"])
                                for u in insp.get_unique_constraints("activities")}
    cycle_index = [ix for ix in insp.get_indexes("leads") if ix["name"] == "ix_leads_cycle"]
    assert [ix["column_names"] for ix in cycle_index] == [["lifecycle_stage", "next_check_at"]]


def test_migrations_make_the_indexes_the_models_declare(migrated_engine):
    """Alembic's files and nurture.store.tables agree index for index (names and columns)."""
    insp = inspect(migrated_engine)
    for table in t.metadata.sorted_tables:
        made = {ix["name"]: ix["column_names"] for ix in insp.get_indexes(table.name)
                if not ix.get("duplicates_constraint")}
        declared = {ix.name: [c.name for c in ix.columns] for ix in table.indexes}
        assert {k: v for k, v in made.items() if k in declared or k.startswith("ix_")} \
            == declared, table.name


def test_unapplied_events_are_found_through_the_partial_index(migrated_engine):
    """Only rows still to apply are indexed by outcome, and the lookups can use that index:
    its predicate is written as literals, which the planner can match (parameters it
    cannot)."""
    from nurture.core.provider_events import EventOutcome
    from nurture.store.event_records import UNAPPLIED
    from nurture.store.events import EventStore

    assert set(UNAPPLIED) == {EventOutcome.PENDING, EventOutcome.ERROR}
    assert str(t.UNAPPLIED_SQL) == (
        f"outcome IN ('{EventOutcome.PENDING.value}', '{EventOutcome.ERROR.value}')")
    indexes = {ix["name"] for ix in inspect(migrated_engine).get_indexes("provider_events")}
    assert "ix_provider_events_unapplied" in indexes
    assert not indexes & {"ix_provider_events_touch", "ix_provider_events_outcome"}
    if migrated_engine.dialect.name == "sqlite":
        PE = t.provider_events
        q = select(PE.c.id).where(PE.c.provider == "sendgrid", t.UNAPPLIED_SQL)
        with migrated_engine.connect() as conn:
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(q.compile(compile_kwargs={"literal_binds": True}))))
        assert "ix_provider_events_unapplied" in plan, plan
    assert EventStore(migrated_engine).unapplied_events(5, 10) == []


# -- leads ----------------------------------------------------------------------------------
def test_upsert_updates_by_email_and_merges_custom_attributes(store):
    assert store.upsert_leads([lead("ada@example.com", attributes={"plan": "trial"}),
                               lead("bob@example.com")]) == (2, 0)
    assert store.upsert_leads([{"email": "ada@example.com", "first_name": None,
                                "company": "Hooli", "attributes": {"colour": "blue"}}]) == (0, 1)
    assert count(store, t.leads) == 2
    row = lead_row(store, "ada@example.com")
    assert row.company == "Hooli"  # a new value wins
    assert row.first_name == "Ada"  # an empty value never erases what is stored
    assert row.attributes == {"plan": "trial", "colour": "blue"}
    assert row.lifecycle_stage == "new"


def test_import_normalises_email_so_reimport_updates(store, tmp_path):
    first = tmp_path / "first.csv"
    first.write_text("email,first_name,company,favourite_colour\n"
                     "  Ada@Example.COM ,Ada,Initech,blue\n", encoding="utf-8")
    second = tmp_path / "second.csv"
    second.write_text("email,company,plan\n"
                      "ADA@example.com,Hooli,pro\n"
                      "ada@EXAMPLE.com   ,,\n", encoding="utf-8")
    r1 = import_leads_csv(store, first)
    r2 = import_leads_csv(store, second)
    assert (r1.inserted, r1.updated, r2.inserted, r2.updated) == (1, 0, 0, 1)
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.leads.c.email, t.leads.c.first_name, t.leads.c.company,
                                   t.leads.c.attributes)).all()
    assert [tuple(r) for r in rows] == [
        ("ada@example.com", "Ada", "Hooli", {"favourite_colour": "blue", "plan": "pro"})]


# -- activities -----------------------------------------------------------------------------
def test_activity_batch_inserted_twice_adds_nothing(store):
    store.upsert_leads([lead("ada@example.com")])
    batch = [act("e1", "ada@example.com"), act("e2", "ada@example.com", "email_click"),
             act("e1", "ada@example.com")]  # the same id twice inside one batch
    assert store.insert_activities(batch) == {"inserted": 2, "duplicates": 1,
                                              "leads_created": 0}
    assert store.insert_activities(batch) == {"inserted": 0, "duplicates": 3,
                                              "leads_created": 0}
    with store.engine.connect() as conn:
        assert sorted(conn.execute(select(t.activities.c.external_id)).scalars()) == ["e1", "e2"]


def test_activities_for_unknown_emails_create_new_leads(store):
    counts = store.insert_activities([act("x1", "new@example.com"),
                                      act("x2", "new@example.com", "content_download")])
    assert counts == {"inserted": 2, "duplicates": 0, "leads_created": 1}
    row = lead_row(store, "new@example.com")
    assert (row.lifecycle_stage, row.first_name, row.attributes) == ("new", None, {})
    assert count(store, t.activities, t.activities.c.lead_id == row.id) == 2
    # a later CSV import fills in the lead the activity created instead of duplicating it
    assert store.upsert_leads([lead("new@example.com")]) == (0, 1)
    assert lead_row(store, "new@example.com").first_name == "New"


def test_duplicate_external_id_is_rejected_by_the_database(store):
    store.insert_activities([act("e1", "ada@example.com")])
    lead_id = lead_row(store, "ada@example.com").id
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(t.activities).values(
            external_id="e1", lead_id=lead_id, type="page_view", occurred_at=AS_OF,
            properties={}, source="import", received_at=AS_OF))
    assert count(store, t.activities) == 1


# -- the send ledger ------------------------------------------------------------------------
def _touch_row(lead_id, step="buyers-guide", rnd=0):
    return {"lead_id": lead_id, "campaign": "inbound-saas", "track": "education", "step": step,
            "round": rnd, "status": "planned", "planned_at": AS_OF, "send_at": AS_OF,
            "updated_at": AS_OF}


def test_touch_ledger_uniqueness_is_enforced_by_the_database(store):
    store.upsert_leads([lead("ada@example.com")])
    lead_id = lead_row(store, "ada@example.com").id
    with store.engine.begin() as conn:
        conn.execute(insert(t.touches), [_touch_row(lead_id), _touch_row(lead_id, rnd=1),
                                         _touch_row(lead_id, step="scoring-101")])
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(t.touches), [_touch_row(lead_id, step="funnel-benchmark"),
                                         _touch_row(lead_id)])  # the second one is a repeat
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.touches.c.step, t.touches.c.round)
                            .order_by(t.touches.c.id)).all()
    # the whole failed transaction rolled back: not even the new funnel-benchmark row landed
    assert [tuple(r) for r in rows] == [("buyers-guide", 0), ("buyers-guide", 1),
                                        ("scoring-101", 0)]


def _decision(lead_id, step="buyers-guide"):
    return Decision(
        lead_id=lead_id, fit_score=0.0, engagement_score=0.0, score=0.0, grade="D",
        buying_stage="research", lifecycle_stage="nurturing", stage_entered_at=AS_OF,
        engagement_since=None, recycle_count=0, recycle_until=None, campaign="inbound-saas",
        track="education", track_rounds={},
        touch=PlannedTouch("inbound-saas", "education", step, 0, None,
                           AS_OF + timedelta(hours=2)))


def _fresh(store, d):
    d.version = lead_row(store, "ada@example.com").version
    return d


def test_reapplying_a_decision_never_plans_the_same_touch_twice(store):
    store.upsert_leads([lead("ada@example.com")])
    lead_id = lead_row(store, "ada@example.com").id
    owners = ["ana@acme.example"]
    assert store.apply_decisions([_fresh(store, _decision(lead_id))], AS_OF, owners,
                                 "test").planned == 1
    store.apply_decisions([_fresh(store, _decision(lead_id))], AS_OF, owners, "test")
    assert count(store, t.touches) == 1
    store.apply_decisions([_fresh(store, _decision(lead_id, "funnel-benchmark"))], AS_OF,
                          owners, "test")
    assert count(store, t.touches) == 2


def test_a_decision_on_a_stale_snapshot_is_refused(store):
    """#8: the cycle used to write the lead row from what it loaded, blindly."""
    store.upsert_leads([lead("ada@example.com")])
    lead_id = lead_row(store, "ada@example.com").id
    stale = _fresh(store, _decision(lead_id))
    store.apply_decisions([_fresh(store, _decision(lead_id, "funnel-benchmark"))], AS_OF,
                          ["o@x.example"], "test")  # someone else wrote the lead meanwhile
    applied = store.apply_decisions([stale], AS_OF, ["o@x.example"], "test")
    assert applied.stale == {lead_id} and applied.planned == 0
    assert count(store, t.touches) == 1


@pytest.fixture
def planned(store, rules):
    """Three website leads with one planned touch each (planned, not yet sent)."""
    store.upsert_leads([lead(f"l{i}@example.com") for i in range(3)])
    lo, hi = all_range(store)
    plan_chunk(store, rules, lo, hi, AS_OF, "UTC")
    assert count(store, t.touches, t.touches.c.status == "planned") == 3
    return lo, hi


def claim(store, lo, hi, before, run_id=None):
    run_id = run_id or store.ledger.runs.register("test")
    return store.ledger.claim(lo, hi, before, AS_OF, run_id, 1000)


def test_a_claimed_touch_is_not_claimed_again(store, planned):
    lo, hi = planned
    first = claim(store, lo, hi, AS_OF + timedelta(days=3))
    second = claim(store, lo, hi, AS_OF + timedelta(days=3))
    assert sorted(c.email for c in first) == ["l0@example.com", "l1@example.com",
                                               "l2@example.com"]
    assert {c.step for c in first} == {"buyers-guide"}
    assert second == []
    assert count(store, t.touches, t.touches.c.status == "sending") == 3


def test_claim_respects_send_before(store, planned):
    lo, hi = planned
    assert claim(store, lo, hi, AS_OF + timedelta(hours=1)) == []  # due at 09:00
    assert len(claim(store, lo, hi, AS_OF + timedelta(hours=2))) == 3


def test_two_connections_claiming_at_once_get_disjoint_touches(store, planned, db_url):
    """Claimer A has read the planned touches but not yet marked them when claimer B, on
    another connection, runs its whole claim: no touch may end up with both. (On SQLite B
    waits for A's write lock; on PostgreSQL it skips A's locked rows.)"""
    import threading

    lo, hi = planned
    other_engine = make_engine(db_url)
    other = LeadStore(other_engine)
    seen: dict[str, list] = {}
    threads: list[threading.Thread] = []

    def run_b():
        seen["b"] = claim(other, lo, hi, AS_OF + timedelta(days=3))

    def interleave(conn, cursor, statement, *_):
        if not threads and statement.lstrip().upper().startswith("SELECT") \
                and "touches" in statement:
            threads.append(threading.Thread(target=run_b))
            threads[0].start()
            threads[0].join(timeout=1.0)  # B either finishes now or waits for A's lock

    event.listen(store.engine, "after_cursor_execute", interleave)
    try:
        a = claim(store, lo, hi, AS_OF + timedelta(days=3))
    finally:
        event.remove(store.engine, "after_cursor_execute", interleave)
    threads[0].join(timeout=30)
    other_engine.dispose()
    a_ids, b_ids = {c.touch_id for c in a}, {c.touch_id for c in seen["b"]}
    assert a_ids.isdisjoint(b_ids), f"touches {sorted(a_ids & b_ids)} claimed twice"
    assert len(a_ids | b_ids) == 3  # and none was lost
    with store.engine.connect() as conn:
        assert dict(conn.execute(select(t.touches.c.status, t.touches.c.attempts)
                                 .distinct()).all()) == {"sending": 1}


# -- suppressions ---------------------------------------------------------------------------
def test_suppressed_lead_gets_no_touch(store, rules, templates_dir):
    store.upsert_leads([lead("ok@example.com"), lead("gone@example.com")])
    assert store.suppress("gone@example.com", "unsubscribe", "test") is True
    assert store.suppress("gone@example.com", "bounce", "test") is False  # first reason stays
    transport = MemoryTransport()
    summary = run_cycle(store, send_context(rules, templates_dir, transport), AS_OF, "UTC",
                        chunk_size=10)
    assert [m.to_email for m in transport.sent] == ["ok@example.com"]
    assert summary["touches_sent"] == 1 and summary["skipped"] == {"suppressed": 1}
    gone = lead_row(store, "gone@example.com")
    assert count(store, t.touches, t.touches.c.lead_id == gone.id) == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(t.suppressions.c.reason)).scalar_one() == "unsubscribe"


def test_suppression_after_planning_cancels_the_touch(store, rules, templates_dir, planned):
    lo, hi = planned
    store.suppress("l1@example.com", "spamreport", "test")
    transport = MemoryTransport()
    result = send_chunk(store, send_context(rules, templates_dir, transport), lo, hi, AS_OF)
    assert sorted(m.to_email for m in transport.sent) == ["l0@example.com", "l2@example.com"]
    assert result.campaigns["inbound-saas"].sent == 2
    with store.engine.connect() as conn:
        rows = dict(conn.execute(select(t.leads.c.email, t.touches.c.status)
                                 .join(t.leads, t.leads.c.id == t.touches.c.lead_id)).all())
    assert rows == {"l0@example.com": "sent", "l1@example.com": "cancelled",
                    "l2@example.com": "sent"}


# -- the due index --------------------------------------------------------------------------
def test_waiting_lead_is_not_loaded_until_new_activity(store, rules, templates_dir):
    """An MQL waits for sales until its SLA is due: the cycle does not even load it. New
    activity (or a lead update) makes it due at once."""
    store.upsert_leads([lead("hot@example.com"), lead("calm@example.com")])
    store.insert_activities([act("d1", "hot@example.com", "demo_request")])
    ctx = send_context(rules, templates_dir, MemoryTransport())
    assert run_cycle(store, ctx, AS_OF, "UTC", chunk_size=10)["mqls"] == 1
    hot = lead_row(store, "hot@example.com")
    assert hot.lifecycle_stage == "mql"
    assert hot.next_check_at == AS_OF + timedelta(hours=48)
    # the other lead got its first touch: asleep until its cadence (core.next_check)
    calm = lead_row(store, "calm@example.com")
    assert calm.next_check_at is not None and calm.next_check_at > AS_OF + timedelta(days=1)

    later = AS_OF + timedelta(hours=1)
    assert snapshot_emails(store, rules, later) == set()
    assert store.cycle_ranges(later, 10) == []
    # the lead's own snapshot (lead show) is still available on demand
    points = {k: v[0] for k, v in rules.scores.points.items()}
    assert store.snapshot(hot.id, later, rules.horizon_days, points, "UTC").email == \
        "hot@example.com"
    # once the SLA is due, the cycle looks at it again
    assert "hot@example.com" in snapshot_emails(store, rules, AS_OF + timedelta(hours=48))

    store.insert_activities([act("p1", "hot@example.com", "page_view", later)])
    assert lead_row(store, "hot@example.com").next_check_at is None
    assert snapshot_emails(store, rules, later) == {"hot@example.com"}


def test_a_sparse_range_loads_its_due_leads_whole(store, rules, templates_dir):
    """A steady-state day: most leads asleep. The due ones are read by name, and each comes
    with all of its activities and touches, as when it is read alone."""
    store.upsert_leads([lead(f"l{i}@example.com") for i in range(12)])
    store.insert_activities([act(f"a{i}", f"l{i}@example.com") for i in range(12)])
    run_cycle(store, send_context(rules, templates_dir, MemoryTransport()), AS_OF, "UTC", 100)
    later = AS_OF + timedelta(hours=2)
    assert store.cycle_ranges(later, 100) == []  # everyone got a touch and sleeps
    store.insert_activities([act("w1", "l3@example.com", "content_download", later),
                             act("w2", "l9@example.com", "email_click", later)])
    (lo, hi, n), = store.cycle_ranges(later, 100)
    assert n == 2 and hi - lo > 2 * n  # sparse: 2 of the range's 7 leads
    points = {k: v[0] for k, v in rules.scores.points.items()}
    snaps = store.load_snapshots(lo, hi, later, rules.horizon_days, points, "UTC")
    assert [s.email for s in snaps] == ["l3@example.com", "l9@example.com"]
    for s in snaps:
        alone = store.snapshot(s.id, later, rules.horizon_days, points, "UTC")
        assert (s.activities, s.touches) == (alone.activities, alone.touches)
        assert len(s.activities) == 2 and len(s.touches) == 1


def test_lead_update_makes_a_waiting_lead_due(store, rules, templates_dir):
    store.upsert_leads([lead("hot@example.com")])
    store.insert_activities([act("d1", "hot@example.com", "demo_request")])
    run_cycle(store, send_context(rules, templates_dir, MemoryTransport()), AS_OF, "UTC", 10)
    later = AS_OF + timedelta(hours=1)
    assert snapshot_emails(store, rules, later) == set()
    store.upsert_leads([{"email": "hot@example.com", "title": "VP Sales", "attributes": {}}])
    assert snapshot_emails(store, rules, later) == {"hot@example.com"}


def test_duplicate_activity_does_not_make_a_lead_due(store, rules, templates_dir):
    store.upsert_leads([lead("hot@example.com")])
    store.insert_activities([act("d1", "hot@example.com", "demo_request")])
    run_cycle(store, send_context(rules, templates_dir, MemoryTransport()), AS_OF, "UTC", 10)
    store.insert_activities([act("d1", "hot@example.com", "demo_request")])
    assert snapshot_emails(store, rules, AS_OF + timedelta(hours=1)) == set()


def test_sales_owned_and_disqualified_leads_are_never_loaded(store, rules):
    store.upsert_leads([lead("sal@example.com"), lead("dq@example.com"),
                        lead("new@example.com")])
    ids = ids_of(store, "sal@example.com", "dq@example.com")
    with store.engine.begin() as conn:
        for email, stage in (("sal@example.com", "sal"), ("dq@example.com", "disqualified")):
            conn.execute(update(t.leads).where(t.leads.c.id == ids[email])
                         .values(lifecycle_stage=stage))
    assert snapshot_emails(store, rules, AS_OF) == {"new@example.com"}
