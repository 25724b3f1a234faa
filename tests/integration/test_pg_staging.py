"""The COPY staging tables on PostgreSQL: created once per connection, and again after a
rollback undid the CREATE (a batch whose transaction failed must not break the next)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from nurture.store.db import make_engine
from nurture.store.pg_copy import DELIVERY_STAGE, copy_then

NOW = datetime(2026, 12, 7, tzinfo=UTC)
COUNT = f"SELECT count(*) FROM {DELIVERY_STAGE.name}"


def _statements(engine) -> list[str]:
    seen: list[str] = []
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _log(conn, cursor, statement, *_a) -> None:
        seen.append(statement)
    return seen


def test_staging_is_created_once_and_again_after_a_rollback(pg_url):
    engine = make_engine(pg_url)
    engine.pool.dispose()
    seen = _statements(engine)
    row = (1, "delivered", None, 3, NOW, NOW, "m1")
    try:
        with engine.connect() as conn:
            # the first use in a transaction that fails: its CREATE is rolled back with it
            with pytest.raises(RuntimeError), conn.begin():
                assert copy_then(conn, DELIVERY_STAGE, [row], COUNT) == [(1,)]
                raise RuntimeError("the batch failed")
            with conn.begin():
                assert copy_then(conn, DELIVERY_STAGE, [row, row], COUNT) == [(2,)]
            creates = sum("CREATE TEMPORARY TABLE" in s for s in seen)
            assert creates == 2
            with conn.begin():  # committed: later batches on this connection skip it
                assert copy_then(conn, DELIVERY_STAGE, [row], COUNT) == [(1,)]
            assert sum("CREATE TEMPORARY TABLE" in s for s in seen) == creates
            with conn.begin():
                assert conn.execute(text(COUNT)).scalar() == 0  # ON COMMIT DELETE ROWS
    finally:
        engine.dispose()
