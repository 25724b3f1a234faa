"""Small shared pieces of the lead store: IN-list batching, insert-or-ignore on both
backends, and a lead row as the flat mapping conditions and templates see."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from nurture.core.domain import LEAD_FIELDS

# SQLite caps bound parameters (32766 on modern builds); stay well under for IN lists.
IN_BATCH = 5000

# the standard lead fields stored as given; `created_at` is a timestamp, handled on its own
LEAD_COLUMNS = tuple(f for f in LEAD_FIELDS if f != "created_at")


def chunks(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def insert_ignore(engine: Engine, table):
    """INSERT … ON CONFLICT DO NOTHING on both backends."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table).prefix_with("IGNORE")


def upsert(engine: Engine, table):
    """INSERT … ON CONFLICT for both backends (`.on_conflict_do_update` on the result)."""
    return (postgresql.insert(table) if engine.dialect.name == "postgresql"
            else sqlite.insert(table))


def lead_field_columns(leads) -> list:
    """The lead columns `lead_fields` reads: select only these where a lead is rendered or
    scored (each unused timestamp column costs a conversion per row)."""
    return [leads.c.attributes, leads.c.created_at, *(leads.c[c] for c in LEAD_COLUMNS)]


def insert_ids(engine: Engine, conn, table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert `rows` and return their new ids in order. On SQLite, inside a write
    transaction (which holds the database's one write lock) the ids are given explicitly
    from MAX(id) + 1 — what SQLite would pick — because an INSERT … RETURNING in parameter
    order runs one statement per row there; elsewhere INSERT … RETURNING in batches."""
    if engine.dialect.name != "sqlite":
        return list(conn.execute(insert(table).returning(table.c.id,
                                                         sort_by_parameter_order=True),
                                 rows).scalars().all())
    first = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one() + 1
    ids = list(range(first, first + len(rows)))
    conn.execute(insert(table), [{**r, "id": i} for r, i in zip(rows, ids, strict=True)])
    return ids


def lead_fields(row: Any) -> dict[str, Any]:
    """A lead row as the flat mapping conditions and templates see (custom attrs included)."""
    fields = dict(row.attributes or {})
    for col in LEAD_COLUMNS:
        fields[col] = getattr(row, col)
    fields["created_at"] = row.created_at.isoformat() if row.created_at else None
    return fields
