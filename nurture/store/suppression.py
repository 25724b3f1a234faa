"""The suppression list: addresses never emailed again (unsubscribe, bounce, spam, manual)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.limits import max_length, string_problem
from nurture.store.rows import insert_ignore


def suppress(engine: Engine, email: str, reason: str, source: str | None = None,
             detail: str | None = None) -> bool:
    """Never email this address again. Returns False when it was already suppressed. An
    address the column cannot hold (too long, NUL) is a ValueError; descriptive fields are
    made to fit, since losing a suppression over its description would be worse than
    shortening it."""
    S = t.suppressions
    problem = string_problem(email, S.c.email, "email")
    if problem:
        raise ValueError(f"cannot suppress this address: {problem}")
    with write_tx(engine) as conn:
        res = conn.execute(insert_ignore(engine, S).values(
            email=email, reason=fit(reason, S.c.reason), source=fit(source, S.c.source),
            detail=fit(detail, S.c.detail),
            created_at=datetime.now(UTC)).execution_options(preserve_rowcount=True))
        return res.rowcount > 0  # without preserve_rowcount psycopg reports -1


def fit(value: str | None, column) -> str | None:
    """A descriptive value made storable: NULs replaced, cut to the column's length."""
    if value is None:
        return None
    value = str(value).replace("\x00", "\ufffd")
    limit = max_length(column)
    return value[:limit] if limit is not None else value
