"""PostgreSQL bulk import: a batch goes in with one COPY into a session temp table, then one
INSERT … SELECT … ON CONFLICT merges it, instead of thousands of bound parameters.

The staging tables hold text, numbers and times as given (no length limits), so a value the
real column cannot take fails the merge statement — a SQLAlchemy `StatementError` like the
plain INSERT's — and the caller's row-by-row retry finds the refused row exactly as before.
The tables are `ON COMMIT DELETE ROWS`: each batch's transaction starts with them empty.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Column, MetaData, Table, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.types import JSON, BigInteger, Integer, Text, TypeEngine

from nurture.store.rows import LEAD_COLUMNS
from nurture.store.tables import UTCDateTime

_meta = MetaData()


def _staging(name: str, columns: Sequence[tuple[str, TypeEngine]]) -> Table:
    return Table(name, _meta, *(Column(c, typ) for c, typ in columns), prefixes=["TEMPORARY"])


_LEAD_TYPES: dict[str, TypeEngine] = {"company_size": BigInteger()}
LEADS_STAGE = _staging("nurture_stage_leads", [
    *((c, _LEAD_TYPES.get(c, Text())) for c in LEAD_COLUMNS),
    ("attributes", JSON()), ("created_at", UTCDateTime())])
ACTIVITIES_STAGE = _staging("nurture_stage_activities", [
    ("ord", Integer()), ("external_id", Text()), ("email", Text()), ("type", Text()),
    ("occurred_at", UTCDateTime()), ("properties", JSON())])


_MADE = "nurture_staging"  # DBAPI connection info: the staging tables this session has


@event.listens_for(Engine, "rollback")
@event.listens_for(Engine, "rollback_savepoint")
def _forget_staging(conn, *_args) -> None:
    """A rollback may have undone a CREATE: ask again next time (IF NOT EXISTS is cheap)."""
    with contextlib.suppress(Exception):
        conn.connection.info.pop(_MADE, None)


def _ensure(conn, table: Table) -> None:
    """Create the session's staging table once (it lives as long as the connection: the
    DBAPI connection's `info` remembers it until a rollback, so later batches skip the
    statement)."""
    made = conn.connection.info.setdefault(_MADE, set())
    if table.name in made:
        return
    cols = ", ".join(f"{c.name} {c.type.compile(conn.dialect)}" for c in table.columns)
    conn.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table.name} ({cols}) "
                      "ON COMMIT DELETE ROWS"))
    made.add(table.name)


def copy_rows(conn, table: Table, rows: Iterable[Sequence[Any]]) -> None:
    """COPY `rows` (sequences in `table`'s column order) into the staging table. Values go
    through the columns' own bind processing (a naive time is refused as on INSERT; JSON is
    encoded); a refused value or a driver error is raised as SQLAlchemy's `StatementError`,
    so callers handle it like the plain INSERT's."""
    _ensure(conn, table)
    sql = f"COPY {table.name} ({', '.join(c.name for c in table.columns)}) FROM STDIN"
    procs = [_processor(c.type, conn.dialect) for c in table.columns]
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.cursor()
    try:
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row([v if p is None or v is None else p(v)
                                for p, v in zip(procs, row, strict=True)])
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
    except (ValueError, TypeError) as exc:
        raise StatementError(str(exc), sql, None, exc) from exc
    finally:
        cursor.close()


def _processor(typ: TypeEngine, dialect) -> Any:
    if isinstance(typ, JSON):
        return json.dumps
    return typ.bind_processor(dialect)


def copy_then(conn, table: Table, rows: Iterable[Sequence[Any]], sql: str,
              params: tuple = ()) -> list:
    """COPY `rows` into the staging table, then run `sql` (which reads it; no parameters)
    in the same transaction: a set-based write of thousands of rows in two round trips,
    without binding each value as a parameter (`params`: those of `sql` itself, `%s`).
    Returns the rows `sql` returned, if any."""
    copy_rows(conn, table, rows)
    res = conn.exec_driver_sql(sql, params)
    return res.all() if res.returns_rows else []


# the webhook's staging tables (`nurture.store.event_records`, `nurture.store.event_apply`)
EVENTS_STAGE = _staging("nurture_stage_events", [
    ("provider", Text()), ("event_id", Text()), ("batch_id", BigInteger()), ("event", Text()),
    ("email", Text()), ("touch_id", BigInteger()), ("lead_id", BigInteger()),
    ("occurred_at", UTCDateTime()), ("outcome", Text()), ("error", Text()),
    ("attempts", Integer()), ("payload", Text())])  # JSON text (`db.json_text`)
DELIVERY_STAGE = _staging("nurture_stage_delivery", [
    ("tid", BigInteger()), ("ds", Text()), ("err", Text()), ("win", Integer()),
    ("da", UTCDateTime()), ("le", UTCDateTime()), ("mid", Text())])
EVENT_ACTIVITIES_STAGE = _staging("nurture_stage_event_activities", [
    ("external_id", Text()), ("lead_id", BigInteger()), ("type", Text()),
    ("occurred_at", UTCDateTime()), ("properties", Text()), ("source", Text()),
    ("received_at", UTCDateTime())])
