"""Small shared pieces of the lead store: IN-list batching, insert-or-ignore on both
backends, and a lead row as the flat mapping conditions and templates see."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import JSON, Boolean, Engine, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from nurture.core.domain import LEAD_FIELDS
from nurture.store.db import bind_time, executemany, read_time
from nurture.store.tables import UTCDateTime

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
    if rows and not _python_defaults(table, rows[0].keys()):
        names = ["id", *rows[0]]
        binds = [_binder(table.c[n].type) for n in names[1:]]
        executemany(conn, f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "
                          f"({', '.join('?' * len(names))})",
                    [(i, *(v if b is None else b(v) for v, b in zip(r.values(), binds,
                                                                   strict=True)))
                     for r, i in zip(rows, ids, strict=True)])
        return ids
    conn.execute(insert(table), [{**r, "id": i} for r, i in zip(rows, ids, strict=True)])
    return ids


def _python_defaults(table, given) -> bool:
    """Whether a column left out of `given` has a Python-side default (the driver path
    would skip it: SQLAlchemy's insert is kept for such rows)."""
    return any(c.default is not None and c.name not in given for c in table.columns)


def _binder(type_):
    """How a SQLite value is bound for a column type, as SQLAlchemy would (None: as is)."""
    if isinstance(type_, UTCDateTime):
        return _sqlite_time
    if isinstance(type_, JSON):
        return json.dumps
    if isinstance(type_, Boolean):
        return lambda v: None if v is None else int(bool(v))
    return None


def _sqlite_time(value):
    return bind_time(value, True)


def lead_fields(row: Any) -> dict[str, Any]:
    """A lead row as the flat mapping conditions and templates see (custom attrs included)."""
    fields = dict(row.attributes or {})
    for col in LEAD_COLUMNS:
        fields[col] = getattr(row, col)
    fields["created_at"] = row.created_at.isoformat() if row.created_at else None
    return fields


# the columns `lead_fields_of` takes, in order, for SQL text read through the driver
LEAD_FIELD_SQL = ", ".join(f"leads.{c}" for c in ("attributes", "created_at", *LEAD_COLUMNS))
LEAD_FIELD_COUNT = 2 + len(LEAD_COLUMNS)


def lead_fields_of(values: Sequence[Any]) -> dict[str, Any]:
    """`lead_fields` from driver values of `LEAD_FIELD_SQL` (JSON text on SQLite)."""
    attributes, created_at = values[0], values[1]
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    fields = dict(attributes or {})
    fields.update(zip(LEAD_COLUMNS, values[2:], strict=True))
    fields["created_at"] = read_time(created_at).isoformat() if created_at else None
    return fields
