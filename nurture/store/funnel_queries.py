"""The rows the funnel report needs, read in bulk: one query per table, only the columns
`nurture.core.funnel.compute_funnel` looks at."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String, case, select, type_coerce
from sqlalchemy.engine import Engine

from nurture.core.domain import RECYCLED
from nurture.core.funnel import FunnelHandoff, FunnelLead, FunnelTransition
from nurture.store import tables as t


def _sqlite_utc(value: str | None) -> datetime | None:
    """A SQLite datetime column as stored ('2026-11-02 08:00:00.000000', naive UTC)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value + "+00:00")
    except ValueError:  # written by something else, with an offset or a `Z`
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _datetimes(engine: Engine) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(column wrapper, value converter) for UTC datetime columns, per backend.

    The table type (`UTCDateTime`) converts every value in Python, which dominates a
    million-row read; here SQLite's stored text is parsed by `datetime.fromisoformat` (C) and
    PostgreSQL's timestamptz values arrive timezone-aware from the driver already (in UTC:
    the transaction sets its time zone, so they compare as fast as the engine's own)."""
    name = engine.dialect.name
    if name == "sqlite":
        return (lambda col: type_coerce(col, String)), _sqlite_utc
    if name == "postgresql":
        return (lambda col: type_coerce(col, DateTime(timezone=True))), (lambda v: v)
    return (lambda col: col), (lambda v: v)


def load_funnel_rows(engine: Engine) -> tuple[list[FunnelLead], list[FunnelTransition],
                                             list[FunnelHandoff]]:
    """Every lead, transition and handoff as the funnel report's row types.

    On PostgreSQL the three queries share one REPEATABLE READ snapshot, so a cycle writing
    meanwhile cannot make the tables disagree. Transition reasons and rules are only read for
    transitions into `recycled` (the only ones the report classifies); MQL reasons are long
    and there is one per MQL. Repeated strings (stages, sources, statuses) are shared, not
    one copy per row. Times are timezone-aware UTC.
    """
    L, TR, H = t.leads, t.transitions, t.handoffs
    col, dt = _datetimes(engine)
    one = {None: None}.setdefault  # one(s, s): the first equal string seen

    lead_q = select(L.c.id, L.c.source, L.c.lifecycle_stage, col(L.c.stage_entered_at),
                    col(L.c.created_at))
    recycle = TR.c.to_stage == RECYCLED
    tr_q = select(TR.c.lead_id, TR.c.from_stage, TR.c.to_stage, col(TR.c.at),
                  case((recycle, TR.c.rule), else_=None).label("rule"),
                  case((recycle, TR.c.reason), else_=None).label("reason"), TR.c.id)
    h_q = select(H.c.lead_id, H.c.status, col(H.c.created_at), col(H.c.sla_due_at),
                 col(H.c.resolved_at), H.c.outcome_reason)
    conn_opts: dict = ({"isolation_level": "REPEATABLE READ"}
                       if engine.dialect.name == "postgresql" else {})
    with engine.connect().execution_options(**conn_opts) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        leads = [FunnelLead(i, one(src, src), one(stage, stage), dt(entered), dt(created))
                 for i, src, stage, entered, created in conn.execute(lead_q)]
        transitions = [FunnelTransition(lead_id, one(a, a), one(b, b), dt(at), rule, reason, i)
                       for lead_id, a, b, at, rule, reason, i in conn.execute(tr_q)]
        handoffs = [FunnelHandoff(lead_id, one(st, st), dt(created), dt(due), dt(resolved),
                                  one(why, why))
                    for lead_id, st, created, due, resolved, why in conn.execute(h_q)]
    return leads, transitions, handoffs
