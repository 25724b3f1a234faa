"""Set-based statements straight through the DBAPI, for the hot bulk paths (webhook apply).

SQLAlchemy's per-row parameter processing costs more than the database work for thousands
of rows per batch, so these helpers hand rows to the driver already converted, as one
statement per set of rows: on PostgreSQL the rows travel as one array per column
(`unnest`), on SQLite as a multi-row `VALUES` (chunked under its bound-parameter cap). The
rows become a CTE `v`, which INSERT … SELECT, UPDATE … FROM and joins then read.

Values are written exactly as the store's column types write them (`tables.UTCDateTime`:
naive UTC text in SQLAlchemy's SQLite format; aware datetimes on PostgreSQL; JSON as
`json.dumps` text), so rows written here read back equal through the normal SQLAlchemy path
(tested on both backends).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

# column kinds -> PostgreSQL array type of the parameter (json travels as text)
_PG_ARRAY = {"text": "text[]", "int": "bigint[]", "ts": "timestamptz[]", "json": "text[]",
             "bool": "boolean[]"}
SQLITE_MAX_PARAMS = 30000  # SQLite's cap is 32766 bound parameters per statement


def sqlite_ts(value: datetime) -> str:
    """A UTC-aware datetime as SQLAlchemy's SQLite DATETIME stores it (naive UTC)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the lead store; use UTC-aware times")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def read_ts(value: Any) -> datetime | None:
    """A timestamp column as read through the DBAPI, as `UTCDateTime` hands it back."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class FastSQL:
    """Raw set-based statements on one connection (inside the caller's transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        if not self.pg and conn.dialect.name != "sqlite":
            raise NotImplementedError(conn.dialect.name)
        self.ph = "%s" if self.pg else "?"

    # -- values --------------------------------------------------------------------------
    def ts(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if self.pg:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the lead store; use UTC-aware times")
            return value
        return sqlite_ts(value)

    def convert(self, kinds: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[tuple]:
        """Rows of Python values -> rows of driver values (timestamps, JSON)."""
        ts_at = [i for i, k in enumerate(kinds) if k == "ts"]
        js_at = [i for i, k in enumerate(kinds) if k == "json"]
        if not ts_at and not js_at:
            return [tuple(r) for r in rows]
        out = []
        ts, dumps = self.ts, json.dumps
        for r in rows:
            r = list(r)
            for i in ts_at:
                r[i] = ts(r[i])
            for i in js_at:
                r[i] = dumps(r[i])
            out.append(tuple(r))
        return out

    # -- the rows as a CTE ---------------------------------------------------------------
    def _parts(self, cols: Sequence[str], kinds: Sequence[str], rows: list[tuple]):
        """(CTE text, its parameters) per chunk of rows; the CTE is `v(cols)`."""
        names = ", ".join(cols)
        if self.pg:
            arrays = ", ".join(f"%b::{_PG_ARRAY[k]}" for k in kinds)  # binary: see db.py
            sel = ", ".join(f"{c}::json" if k == "json" else c
                            for c, k in zip(cols, kinds, strict=True))
            yield (f"WITH v({names}) AS (SELECT {sel} FROM unnest({arrays}) AS u({names}))",
                   [list(col) for col in zip(*rows, strict=True)])
            return
        one = "(" + ", ".join("?" * len(cols)) + ")"
        per = max(1, SQLITE_MAX_PARAMS // len(cols))
        for i in range(0, len(rows), per):
            part = rows[i:i + per]
            yield (f"WITH v({names}) AS (VALUES {', '.join([one] * len(part))})",
                   [x for r in part for x in r])

    def run(self, cols: Sequence[str], kinds: Sequence[str], rows: Iterable[Sequence[Any]],
            body: str, extra: Sequence[Any] = ()) -> list[tuple]:
        """`WITH v(cols) AS (the rows) <body>` for all rows; `extra`: parameters of `body`
        (placeholders `self.ph`). Returns the rows any RETURNING gave, over all chunks."""
        data = self.convert(kinds, rows)
        if not data:
            return []
        out: list[tuple] = []
        for cte, params in self._parts(cols, kinds, data):
            res = self.conn.exec_driver_sql(f"{cte} {body}", tuple(params) + tuple(extra))
            if res.returns_rows:
                out += res.fetchall()
        return out

    def insert(self, table: str, cols: Sequence[str], kinds: Sequence[str],
               rows: Iterable[Sequence[Any]], returning: str | None = None) -> list[tuple]:
        """INSERT … ON CONFLICT DO NOTHING [RETURNING]: RETURNING lists only the rows this
        statement inserted (a row another transaction inserted first is skipped)."""
        names = ", ".join(cols)
        # `WHERE true`: SQLite would read ON CONFLICT as a join constraint otherwise
        body = (f"INSERT INTO {table} ({names}) SELECT {names} FROM v WHERE true "
                "ON CONFLICT DO NOTHING" + (f" RETURNING {returning}" if returning else ""))
        return self.run(cols, kinds, rows, body)

    def select_in(self, columns: str, table: str, key: str, values: Iterable[Any],
                  kind: str = "int") -> list[tuple]:
        """SELECT columns FROM table WHERE key IN values (one array on PostgreSQL)."""
        vals = list(values)
        if not vals:
            return []
        if self.pg:
            return self.conn.exec_driver_sql(
                f"SELECT {columns} FROM {table} WHERE {key} = ANY(%b::{_PG_ARRAY[kind]})",
                (vals,)).fetchall()
        out: list[tuple] = []
        for i in range(0, len(vals), SQLITE_MAX_PARAMS):
            part = vals[i:i + SQLITE_MAX_PARAMS]
            out += self.conn.exec_driver_sql(
                f"SELECT {columns} FROM {table} WHERE {key} IN ({', '.join('?' * len(part))})",
                tuple(part)).fetchall()
        return out
