"""Small shared state: the per-database secret and atomic counters (round-robin turns)."""

from __future__ import annotations

import secrets

from sqlalchemy import Connection, Engine, select, update

from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.rows import insert_ignore


def get_or_create_secret(engine: Engine, key: str = "secret_key") -> str:
    """A random per-database secret (signs unsubscribe tokens when none is configured).
    Insert-or-ignore, then read: two processes starting at once agree on one secret."""
    with write_tx(engine) as conn:
        value = conn.execute(select(t.kv.c.value).where(t.kv.c.key == key)).scalar()
        if value:
            return value
        conn.execute(insert_ignore(engine, t.kv).values(key=key,
                                                        value=secrets.token_urlsafe(32)))
        return conn.execute(select(t.kv.c.value).where(t.kv.c.key == key)).scalar_one()


def next_counter(engine: Engine, conn: Connection, name: str, n: int) -> int:
    """Atomically reserve `n` values of a counter inside the caller's transaction; returns
    the first (the row's update lock serialises concurrent runs)."""
    conn.execute(insert_ignore(engine, t.counters).values(name=name, value=0))
    new = conn.execute(update(t.counters).where(t.counters.c.name == name)
                       .values(value=t.counters.c.value + n)
                       .returning(t.counters.c.value)).scalar_one()
    return int(new) - n
