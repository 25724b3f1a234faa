"""Planner statistics after bulk writes.

PostgreSQL plans from table statistics that autovacuum refreshes only after enough changes
and some delay. Right after a cycle wrote tens of thousands of touches (or an import loaded
a million activities) they still describe the tables as they were — a `touches` table
"with 100 rows" — and the next queries, the results reports first, get nested-loop plans
that run for minutes instead of a fraction of a second (100k leads: the steps report went
from > 100 s to 0.4 s after ANALYZE). So the writers that change a table in bulk refresh its
statistics themselves, as the bulk load is done. SQLite plans without them (no-op).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

# what a cycle changes in bulk (leads: stages and next checks; the ledger; the audit trail)
CYCLE_TABLES = ("leads", "campaign_states", "touches", "transitions", "handoffs")


def refresh_statistics(engine: Engine, tables: Iterable[str] = CYCLE_TABLES) -> None:
    """ANALYZE `tables` on PostgreSQL (a sample of each: well under a second at 1M rows)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE " + ", ".join(tables))
        conn.commit()
