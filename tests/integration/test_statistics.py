"""The cycle and the importers refresh PostgreSQL's planner statistics after their bulk
writes: without it the results reports right after a 100k-lead cycle planned nested loops
over "empty" tables and ran for minutes (see `nurture.store.statistics`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nurture.adapters.delivery.memory import MemoryTransport
from nurture.core.rendering import Renderer
from nurture.services.cycle import SendContext, run_cycle
from nurture.services.ingest import import_leads_csv
from nurture.store.db import make_engine, upgrade
from nurture.store.store import LeadStore

AS_OF = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def analyzed(engine) -> dict[str, bool]:
    """Which tables of this test's schema were ANALYZEd by hand (not by autovacuum)."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        return {name: last is not None for name, last in conn.exec_driver_sql(
            "SELECT relname, last_analyze FROM pg_stat_user_tables "
            "WHERE schemaname = current_schema()")}


def test_a_cycle_and_an_import_leave_fresh_statistics(pg_url, rules, templates_dir, tmp_path):
    engine = make_engine(pg_url)
    upgrade(engine)
    store = LeadStore(engine)
    csv = tmp_path / "leads.csv"
    csv.write_text("email,first_name,company,title,timezone,source\n" + "".join(
        f"l{i}@example.com,L{i},Initech,Marketing Manager,UTC,website\n" for i in range(30)))
    import_leads_csv(store, csv)
    after_import = analyzed(engine)
    assert after_import["leads"] and not after_import["touches"]
    ctx = SendContext(rules=rules, renderer=Renderer(templates_dir),
                      transport=MemoryTransport(), secret="test-secret-0123456789",
                      public_url="https://n.example", heartbeat=0.05,
                      lapse=timedelta(seconds=5))
    assert run_cycle(store, ctx, AS_OF, "UTC", 100)["touches_sent"] > 0
    after_cycle = analyzed(engine)
    assert all(after_cycle[t] for t in ("leads", "touches", "transitions", "campaign_states"))
    engine.dispose()
