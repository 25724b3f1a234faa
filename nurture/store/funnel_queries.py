"""The funnel report counted by the database (`funnel_report`), and the rows its reference
definition needs (`load_funnel_rows` for `nurture.core.funnel.compute_funnel`).

`funnel_report` is what the daily cycle and `nurture report funnel` run: three aggregate
queries (`nurture.store.funnel_sql`) in one snapshot. What comes back to Python is a row per
distinct stage history (they repeat: a few dozen, however many leads), one or two per stage
for its median, and a few per handoff status × reason × source and per recycle rule; those
are classified and counted by the same pure functions `compute_funnel` uses. The Python side
holds no per-lead data. `load_funnel_rows` reads every lead, transition and handoff (memory
grows with the store): it is kept for tests that check the SQL against the definition.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, String, case, select, type_coerce
from sqlalchemy.engine import Connection, Engine

from nurture.core.domain import RECYCLED
from nurture.core.funnel import FunnelHandoff, FunnelLead, FunnelTransition
from nurture.core.funnel_counts import (
    FunnelCounts,
    HandoffTally,
    funnel_dict,
    path_counts,
    recycle_reason,
)
from nurture.store import tables as t
from nurture.store.funnel_sql import (
    PATH_SEP,
    handoff_query,
    recycle_query,
    scan_memory,
    stage_query,
    time_arithmetic,
)


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


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction for all of a report's queries: on PostgreSQL a REPEATABLE READ
    snapshot (a cycle writing meanwhile cannot make the tables disagree), in UTC."""
    opts: dict = ({"isolation_level": "REPEATABLE READ"}
                  if engine.dialect.name == "postgresql" else {})
    with engine.connect().execution_options(**opts) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        yield conn


def load_funnel_rows(engine: Engine) -> tuple[list[FunnelLead], list[FunnelTransition],
                                             list[FunnelHandoff]]:
    """Every lead, transition and handoff as the funnel report's row types.

    The three queries share one snapshot. Transition reasons and rules are only read for
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
    with _snapshot(engine) as conn:
        leads = [FunnelLead(i, one(src, src), one(stage, stage), dt(entered), dt(created))
                 for i, src, stage, entered, created in conn.execute(lead_q)]
        transitions = [FunnelTransition(lead_id, one(a, a), one(b, b), dt(at), rule, reason, i)
                       for lead_id, a, b, at, rule, reason, i in conn.execute(tr_q)]
        handoffs = [FunnelHandoff(lead_id, one(st, st), dt(created), dt(due), dt(resolved),
                                  one(why, why))
                    for lead_id, st, created, due, resolved, why in conn.execute(h_q)]
    return leads, transitions, handoffs


def funnel_report(engine: Engine, as_of: datetime) -> dict[str, Any]:
    """The funnel report at `as_of` (definitions: `nurture.core.funnel`), counted in SQL:
    equal to `compute_funnel(*load_funnel_rows(engine), as_of)` without reading the rows."""
    as_of = as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)
    clock = time_arithmetic(engine)
    stays: dict[str, list[timedelta]] = defaultdict(list)
    tally = HandoffTally()
    recycled: Counter = Counter()
    paths: Counter[tuple[str, ...]] = Counter()
    with _snapshot(engine) as conn, scan_memory(conn):
        for kind, key, n, dur in conn.execute(stage_query(engine, as_of)):
            if kind == "path":
                paths[tuple(key.split(PATH_SEP))] += int(n)
            else:
                stays[key].append(clock.span(dur))
        for status, reason, source, n, overdue, in_time in conn.execute(handoff_query(as_of)):
            tally.count(status, reason, source, int(n), int(overdue), int(in_time))
        for rule, reason, n in conn.execute(recycle_query(as_of)):
            recycled[recycle_reason(rule, reason)] += int(n)
    now_in, reached, converted = path_counts(paths)
    return funnel_dict(as_of, FunnelCounts(now_in, reached, converted, stays, tally, recycled))
