"""A whole import batch (COPY + one merge statement on PostgreSQL, multi-row INSERT on SQLite)
keeps every rule of the row-at-a-time import: later values win inside a batch, empty values
never erase, attributes merge, first-touch fields are set once, re-imports are counted and
never doubled, unknown emails become leads, and activities land in file order. Also the
cycle's id ranges, computed in SQL, match chunking the due ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from nurture.store import tables as t
from nurture.store.rows import chunks

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
NOW = datetime.now(UTC)


def lead(store, email: str):
    with store.engine.connect() as conn:
        return conn.execute(select(t.leads).where(t.leads.c.email == email)).one()


def test_a_lead_batch_merges_like_single_rows(store):
    batch = [{"email": "a@example.com", "source": "web", "utm_source": "google",
              "attributes": {"plan": "pro"}, "created_at": T0, "company_size": 12},
             {"email": "b@example.com", "attributes": {}},
             {"email": "a@example.com", "first_name": "Ann", "source": None,
              "attributes": {"size": "big"}}]
    assert store.upsert_leads(batch) == (2, 0)
    a = lead(store, "a@example.com")
    assert (a.first_name, a.source, a.first_source, a.first_utm_source, a.company_size) == (
        "Ann", "web", "web", "google", 12)
    assert a.attributes == {"plan": "pro", "size": "big"}
    assert (a.created_at, a.stage_entered_at, a.lifecycle_stage, a.version) == (
        T0, T0, "new", 0)
    b = lead(store, "b@example.com")
    assert b.created_at >= NOW - timedelta(minutes=5) and b.first_source is None

    again = [{"email": "a@example.com", "source": "ads", "attributes": {"plan": "team"}},
             {"email": "c@example.com", "source": "event", "attributes": {}}]
    assert store.upsert_leads(again) == (1, 1)
    a = lead(store, "a@example.com")
    assert (a.first_name, a.source, a.first_source, a.version) == ("Ann", "ads", "web", 1)
    assert a.attributes == {"plan": "team", "size": "big"} and a.created_at == T0
    assert lead(store, "c@example.com").first_source == "event"
    # one row alone takes the plain INSERT: the same rules
    assert store.upsert_leads([{"email": "d@example.com", "source": "web",
                                "attributes": {"k": "v"}}]) == (1, 0)
    d = lead(store, "d@example.com")
    assert (d.first_source, d.attributes, d.version) == ("web", {"k": "v"}, 0)


def test_an_activity_batch_keeps_first_ids_file_order_and_creates_leads(store):
    store.upsert_leads([{"email": "a@example.com", "attributes": {}},
                        {"email": "b@example.com", "attributes": {}}])
    with store.engine.begin() as conn:
        conn.execute(update(t.leads).values(next_check_at=T0 + timedelta(days=30)))
    before = lead(store, "a@example.com").version
    acts = [{"id": "z1", "email": "a@example.com", "type": "page_view", "occurred_at": T0,
             "properties": {"url": "/x"}},
            {"id": "z1", "email": "a@example.com", "type": "form_submit", "occurred_at": T0},
            {"id": "m2", "email": "new@example.com", "type": "email_click",
             "occurred_at": T0 + timedelta(hours=1)},
            {"id": "a3", "email": "new@example.com", "type": "page_view", "occurred_at": T0}]
    assert store.insert_activities(acts) == {"inserted": 3, "duplicates": 1,
                                             "leads_created": 1}
    with store.engine.connect() as conn:
        stored = conn.execute(select(t.activities.c.external_id, t.activities.c.type,
                                     t.activities.c.properties, t.activities.c.source)
                              .order_by(t.activities.c.id)).all()
    assert [tuple(r) for r in stored] == [("z1", "page_view", {"url": "/x"}, "import"),
                                          ("m2", "email_click", {}, "import"),
                                          ("a3", "page_view", {}, "import")]
    a, b, new = (lead(store, e) for e in ("a@example.com", "b@example.com", "new@example.com"))
    assert (a.activity_pending, a.next_check_at, a.version) == (True, None, before + 1)
    assert (b.activity_pending, b.next_check_at is not None) == (False, True)
    assert (new.lifecycle_stage, new.attributes, new.activity_pending) == ("new", {}, True)
    # the same batch again: nothing doubled, nothing created, no lead touched
    assert store.insert_activities(acts) == {"inserted": 0, "duplicates": 4,
                                             "leads_created": 0}
    assert lead(store, "a@example.com").version == before + 1


def test_cycle_ranges_match_chunking_the_due_ids(store):
    store.upsert_leads([{"email": f"l{i}@example.com", "attributes": {}} for i in range(23)])
    with store.engine.begin() as conn:
        ids = conn.execute(select(t.leads.c.id).order_by(t.leads.c.id)).scalars().all()
        # a sales lead and one waiting until later are not due; the rest are
        conn.execute(update(t.leads).where(t.leads.c.id == ids[4])
                     .values(lifecycle_stage="customer"))
        conn.execute(update(t.leads).where(t.leads.c.id == ids[9])
                     .values(next_check_at=NOW + timedelta(days=3)))
    due = [i for k, i in enumerate(ids) if k not in (4, 9)]
    for size in (1, 4, 5, 21, 1000):
        expected = [(c[0], c[-1], len(c)) for c in chunks(due, size)]
        assert store.cycle_ranges(NOW, size) == expected
    assert store.cycle_ranges(NOW, 5, engaged_only=True) == []
