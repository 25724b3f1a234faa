"""Small shared pieces of the lead store: IN-list batching, insert-or-ignore on both
backends, and a lead row as the flat mapping conditions and templates see."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Engine,
    Float,
    Integer,
    String,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from nurture.core.domain import LEAD_FIELDS
from nurture.store.db import bind_time, bulk_write, fetch, read_time
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
    """Insert `rows` and return their new ids in order, the ids given explicitly: on SQLite,
    inside a write transaction (which holds the database's one write lock), from MAX(id) + 1
    — what SQLite would pick — because an INSERT … RETURNING in parameter order runs one
    statement per row there; on PostgreSQL drawn from the id column's own sequence (so
    concurrent writers never collide), then one INSERT over arrays (`unnest`)."""
    if not rows:
        return []
    if _python_defaults(table, rows[0].keys()):  # SQLAlchemy's insert fills those in
        return _insert_ids_typed(engine, conn, table, rows)
    names = list(rows[0])
    if engine.dialect.name == "sqlite":
        first = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one() + 1
        ids = list(range(first, first + len(rows)))
    else:
        ids = [r[0] for r in fetch(conn, "SELECT nextval(pg_get_serial_sequence(?, 'id')) "
                                         "FROM generate_series(1, ?)", (table.name, len(rows)))]
    lite = engine.dialect.name == "sqlite"
    binds = [_binder(table.c[n].type, lite) for n in names]
    values = [(i, *(v if b is None else b(v) for v, b in zip(r.values(), binds, strict=True)))
              for r, i in zip(rows, ids, strict=True)]
    cols = ", ".join(["id", *names])
    arrays = ", ".join(f"%s::{_pg_type(table.c[n].type)}[]" for n in ["id", *names])
    picks = ", ".join(f"v.{n}::json" if isinstance(table.c[n].type, JSON) else f"v.{n}"
                      for n in ["id", *names])
    bulk_write(conn, f"INSERT INTO {table.name} ({cols}) VALUES "
                     f"({', '.join('?' * (len(names) + 1))})",
               f"INSERT INTO {table.name} ({cols}) SELECT {picks} FROM unnest({arrays}) "
               f"AS v({cols})", values)
    return ids


def _insert_ids_typed(engine: Engine, conn, table, rows: list[dict[str, Any]]) -> list[int]:
    if engine.dialect.name != "sqlite":
        return list(conn.execute(insert(table).returning(table.c.id,
                                                         sort_by_parameter_order=True),
                                 rows).scalars().all())
    first = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one() + 1
    ids = list(range(first, first + len(rows)))
    conn.execute(insert(table), [{**r, "id": i} for r, i in zip(rows, ids, strict=True)])
    return ids


def _python_defaults(table, given) -> bool:
    """Whether a column left out of `given` has a Python-side default (the driver path
    would skip it: SQLAlchemy's insert is kept for such rows)."""
    return any(c.default is not None and c.name not in given for c in table.columns)


def _binder(type_, sqlite: bool):
    """How a driver binds a value for a column type, as SQLAlchemy would (None: as is); on
    PostgreSQL each array holds one Python type (floats as floats, enums as their text)."""
    if isinstance(type_, UTCDateTime):
        return _sqlite_time if sqlite else _pg_time
    if isinstance(type_, JSON):
        return json.dumps
    if isinstance(type_, Boolean):
        return lambda v: None if v is None else (int(bool(v)) if sqlite else bool(v))
    if sqlite:
        return None
    if isinstance(type_, Float):
        return lambda v: None if v is None else float(v)
    if isinstance(type_, String):
        return lambda v: None if v is None else str(v)
    return None


def _pg_type(type_) -> str:
    """The PostgreSQL array element type `insert_ids` sends a column as."""
    if isinstance(type_, UTCDateTime):
        return "timestamptz"
    if isinstance(type_, Boolean):
        return "boolean"
    if isinstance(type_, Float):
        return "float8"
    if isinstance(type_, Integer | BigInteger):
        return "bigint"
    return "text"  # strings, and JSON as its text (cast back in the SELECT)


def _pg_time(value):
    return bind_time(value, False)


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
