"""Engines and migrations: a SQLite file by default, any SQLAlchemy URL for scale."""

from __future__ import annotations

import importlib.util
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DBAPIError

# The migrations stay in the `lead_store` package (their files import `lead_store.tables`);
# found by name so the store does not import the package that aliases it.
MIGRATIONS_DIR = Path(importlib.util.find_spec("lead_store").origin).parent / "migrations"


def make_engine(url: str) -> Engine:
    """Create an engine tuned for the cycle's bulk reads and writes."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None  # transactions are begun below, explicitly
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            # 64 MiB of page cache (default 2 MiB): at 1M leads the cycle re-read pages
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            # A writer takes SQLite's write lock when its transaction starts: a transaction
            # that reads and then writes can never act on a snapshot another writer has
            # changed in between (and waits on busy_timeout instead of failing).
            write = conn.get_execution_options().get("nurture_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, future=True)


def write_tx(engine: Engine):
    """A write transaction: `BEGIN IMMEDIATE` on SQLite (the write lock from the start); on
    PostgreSQL an ordinary transaction, where writers lock rows (`FOR UPDATE`) or
    compare-and-set."""
    return engine.execution_options(nurture_write=True).begin()


# PostgreSQL: deadlock detected, serialization failure; SQLite: the write lock timed out
_TRANSIENT_SQLSTATES = {"40P01", "40001"}


def is_transient(exc: BaseException) -> bool:
    """A conflict between concurrent writers that a retry of the whole transaction solves."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    return "database is locked" in str(orig or "")


def retrying(fn, attempts: int = 5):
    """Run `fn` (one whole transaction) again when concurrent writers collided (a deadlock
    PostgreSQL broke, a busy SQLite): with every writer taking its rows in id order this is
    rare, but several machines at once must never fail a run over it."""
    for attempt in range(attempts):
        try:
            return fn()
        except DBAPIError as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(random.uniform(0.05, 0.2) * 2 ** attempt)
    raise AssertionError("unreachable")


# Alembic is imported where a migration is looked at or run, not with the store: every
# process (a CLI command, a Dask worker) would pay its ~0.2 s import otherwise.
def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to `revision` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()  # type: ignore[arg-type]


def is_migrated(engine: Engine) -> bool:
    if not inspect(engine).has_table("alembic_version"):
        return False
    return current_revision(engine) == head_revision()


# -- the hot bulk statements, straight to the driver --------------------------------------
# SQLAlchemy Core processes every parameter of every row of an executemany in Python (type
# processors, bind names); for the cycle's few hot statements that is most of the write
# cost. These run precompiled SQL text per dialect with plain tuples, converting exactly as
# the column types would (`bind_time` is `tables.UTCDateTime` plus SQLite's storage format).


def is_sqlite(conn) -> bool:
    return conn.dialect.name == "sqlite"


def bind_time(value, sqlite: bool):
    """A timestamp as `UTCDateTime` binds it: aware UTC on PostgreSQL; on SQLite naive UTC
    in SQLAlchemy's storage format (`YYYY-MM-DD HH:MM:SS.ffffff`, compared as text)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the lead store; use UTC-aware times")
    value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else value


def driver_sql(conn, sql: str) -> str:
    """`sql` written with `?` placeholders, in the connection's driver paramstyle."""
    return sql if is_sqlite(conn) else sql.replace("?", "%s")


def executemany(conn, sql: str, rows: list[tuple]) -> int:
    """Run `sql` (`?` placeholders) once per tuple in the connection's transaction (through
    SQLAlchemy's driver-SQL path: the engine's events still see it); returns how many rows
    the statements matched in total (compare-and-set counts)."""
    if not rows:
        return 0
    res = conn.exec_driver_sql(driver_sql(conn, sql), rows,
                               execution_options={"preserve_rowcount": True})
    return res.rowcount


# For an `UPDATE <table> … FROM v` over a CTE `v` of arrays: bound the table's side to the
# rows' id range. Without it PostgreSQL hash-joins the arrays with a scan of the whole table
# — for every chunk, so a cycle's write cost grew with the table (at 100k leads, 64 of a
# 5,000-lead update's 119 ms were that scan).
ID_RANGE = "{0}.id BETWEEN (SELECT min(id) FROM v) AND (SELECT max(id) FROM v)"


def bulk_write(conn, sqlite_sql: str, pg_sql: str, rows: list[tuple]) -> int:
    """One statement per row on SQLite (`sqlite_sql`, `?` placeholders; in-process, cheap);
    on PostgreSQL one set-based statement over the rows' columns as arrays (`pg_sql`, one
    `%s::type[]` per tuple position, read with `unnest`): a round trip and a plan per chunk
    instead of per row. Returns how many rows matched (compare-and-set counts)."""
    if not rows:
        return 0
    if is_sqlite(conn):
        return executemany(conn, sqlite_sql, rows)
    res = conn.exec_driver_sql(binary_params(pg_sql),
                               tuple(list(c) for c in zip(*rows, strict=True)),
                               execution_options={"preserve_rowcount": True})
    return res.rowcount


def binary_params(pg_sql: str) -> str:
    """`pg_sql` with its `%s` parameters sent in PostgreSQL's binary format (`%b`): psycopg
    writes a 5,000-element timestamptz array as text at ~2.7 µs per element, in binary at
    ~0.2 µs — most of a chunk's write time was spent there."""
    return pg_sql.replace("%s", "%b")


def fetch(conn, sql: str, params: tuple = ()) -> list:
    """Rows of `sql` (`?` placeholders) with driver values (no type processing: the caller
    converts what it uses, see `read_time`)."""
    return conn.exec_driver_sql(driver_sql(conn, sql), params).all()


def read_time(value):
    """A timestamp as `UTCDateTime` reads it back from a driver value (SQLite: text)."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_text(value) -> str:
    """A JSON column's value as the text the driver binds (orjson: ~10x json.dumps; values
    must be JSON-native with str keys and ints within 64 bits — cleaned data is)."""
    return orjson.dumps(value).decode()


class TimeBinder(dict):
    """`bind_time` with a memo, for the rows of one batch (they share few distinct times:
    an event batch's are whole seconds): `binder[value]` is `bind_time(value, sqlite)`."""

    def __init__(self, sqlite: bool) -> None:
        super().__init__()
        self.sqlite = sqlite

    def __missing__(self, value):
        out = self[value] = bind_time(value, self.sqlite)
        return out


def int_array(values) -> str:
    """Whole numbers as one PostgreSQL array literal (`'{1,2,3}'`, cast `::bigint[]` in the
    SQL): a thousand ids bind as one short text instead of a value each."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


IN_CHUNK = 5000  # values per SQLite IN list (its bound-parameter cap is 32766)


def select_in(conn, sql: str, column: str, values, pg_type: str = "bigint",
              params: tuple = ()) -> list:
    """Rows of `sql` (a SELECT ending in WHERE/AND; `?` placeholders for `params`) and
    `column IN values`, with driver values: one array on PostgreSQL (`= ANY`, typed so the
    index is used), IN lists of at most `IN_CHUNK` values on SQLite."""
    vals = list(values)
    if not vals:
        return []
    if not is_sqlite(conn):
        arr = int_array(vals) if pg_type == "bigint" else vals
        return fetch(conn, f"{sql} {column} = ANY(?::{pg_type}[])", (*params, arr))
    out: list = []
    for i in range(0, len(vals), IN_CHUNK):
        part = vals[i:i + IN_CHUNK]
        out += fetch(conn, f"{sql} {column} IN ({', '.join('?' * len(part))})",
                     (*params, *part))
    return out
