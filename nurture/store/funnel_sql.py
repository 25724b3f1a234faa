"""The SQL of the funnel report (`nurture.store.funnel_queries.funnel_report` runs it):
one statement for the lead stages, one for handoffs, one for recycles, each returning a few
rows however many leads there are. Set-based: window functions over each lead's transitions
(SQLite ≥ 3.25, PostgreSQL), the same expressions on both backends except time arithmetic
and the median's operands, where each has its own exact way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Integer,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import Connection, Engine

from nurture.core.domain import RECYCLED
from nurture.core.funnel_counts import PENDING, REJECTED, SLA_REASON_PREFIX
from nurture.store import tables as t

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Clock(NamedTuple):
    """Times as values whose differences are exact stay durations, per backend: PostgreSQL
    subtracts timestamptz into an interval (a timedelta to the driver); SQLite's stored text
    becomes integer microseconds since 1970 (its `julianday` is a float with a resolution of
    ~40 µs at today's dates: enough to reorder close stays and move a median across a
    rounding edge)."""

    of: Callable[[Any], Any]          # a stored time column
    at: Callable[[datetime], Any]     # `as_of`
    span: Callable[[Any], timedelta]  # a difference as the driver returns it


def time_arithmetic(engine: Engine) -> Clock:
    """The backend's `Clock`."""
    if engine.dialect.name == "sqlite":
        def micros(col):
            """'YYYY-MM-DD HH:MM:SS.ffffff' (the store's format) as µs since 1970: whole
            seconds from julianday of the first 19 characters (a float, exact after
            rounding), plus the digits. Not strftime('%s', col): SQLite reads times to the
            millisecond, so from .9995 s on it gives the next second. Literals, not
            parameters, in the SQL: SQLite evaluates constant arguments once."""
            def lit(text: str):
                return literal_column(text)
            seconds = func.round((func.julianday(func.substr(col, lit("1"), lit("19")))
                                  - lit("2440587.5")) * lit("86400"))
            return (cast(seconds, Integer) * lit("1000000")
                    + cast(func.substr(col, lit("21"), lit("6")), Integer))
        return Clock(micros, lambda v: literal((v - _EPOCH) // _MICROSECOND, Integer),
                      lambda v: timedelta(microseconds=v))
    return Clock(lambda col: col, lambda v: literal(v, t.UTCDateTime), lambda v: v)


# between the stages of a path in SQL: a control character, in no stage name
PATH_SEP = "\x1f"


def _histories(as_of: datetime):
    """Each lead in the report with its transitions in stage-history order, (at, id): one
    row per transition, or one row with a NULL `at` for a lead without any. Beside each
    transition: its place (`pos`, from 1), when the next one is (`next_at`), the lead's first
    from_stage (the stage it was created in) and its `path` so far (the to_stages up to this
    transition, joined by PATH_SEP). Times as stored: compared with `as_of` as the store
    does, converted only where a duration is taken."""
    L, TR = t.leads, t.transitions
    # one frame for all (one window pass on SQLite); it only matters to the running path
    w = {"partition_by": L.c.id, "order_by": (TR.c.at, TR.c.id), "rows": (None, 0)}
    return (select(L.c.lifecycle_stage, L.c.stage_entered_at.label("entered"),
                   L.c.created_at.label("created"), TR.c.from_stage, TR.c.to_stage, TR.c.at,
                   func.row_number().over(**w).label("pos"),
                   func.lead(TR.c.at, type_=t.UTCDateTime).over(**w).label("next_at"),
                   func.first_value(TR.c.from_stage).over(**w).label("first_stage"),
                   func.aggregate_strings(TR.c.to_stage, PATH_SEP).over(**w).label("path"))
            .select_from(L.outerjoin(TR, TR.c.lead_id == L.c.id))
            .where(L.c.created_at <= as_of)
            .cte("histories"))


def _middle_stays(engine: Engine, stays):
    """Per stage the middle one (odd count) or two (even count) of its stays by duration:
    the operands of the median. PostgreSQL: percentile_disc at 0.5 and just above it (the
    ceil(0.5·n)-th and, for an even n, the next value) from one sort per stage; SQLite:
    row numbers against the stage's count."""
    if engine.dialect.name == "postgresql":
        halves = literal_column("ARRAY[0.5, 0.500000000001]::float8[]")
        return (select(stays.c.stage, func.unnest(
                    func.percentile_disc(halves).within_group(stays.c.dur)))
                .group_by(stays.c.stage))
    over = {"partition_by": stays.c.stage, "order_by": stays.c.dur}
    ranked = select(stays.c.stage, stays.c.dur, func.row_number().over(**over).label("rn"),
                    func.count().over(**over, rows=(None, None)).label("n")).subquery()
    # the middle one of n (n odd) or two (n even): 2·rn ∈ {n, n+1, n+2}
    return (select(ranked.c.stage, ranked.c.dur)
            .where((2 * ranked.c.rn).between(ranked.c.n, ranked.c.n + 2)))


def stage_query(engine: Engine, as_of: datetime):
    """Rows ('path', the stages of a path joined by PATH_SEP, leads, NULL) — every lead's
    stage history up to `as_of`, counted per distinct history (they repeat: a few dozen) —
    and ('stay', stage, NULL, duration) for the middle stays of each stage.

    Stays: a lead's first row gives the stay in the stage it was created in (from created_at
    to its first transition, or to `as_of` if that is later; without transitions, in
    lifecycle_stage since stage_entered_at); each transition up to `as_of` starts a stay in
    its to_stage, up to the next transition or `as_of`. A lead's path is on its last row up
    to `as_of` (or its first row, when every transition is later).
    """
    h, clock = _histories(as_of), time_arithmetic(engine)
    now, at = clock.at(as_of), clock.of(h.c.at)
    none, first, later = h.c.at.is_(None), h.c.pos == 1, h.c.at > as_of
    last = or_(none, and_(first, later),
               and_(h.c.at <= as_of, or_(h.c.next_at.is_(None), h.c.next_at > as_of)))
    paths = (select(case((none, h.c.lifecycle_stage), (later, h.c.from_stage),
                         else_=h.c.first_stage + PATH_SEP + h.c.path).label("path"))
             .where(last).subquery("paths"))
    created = (select(case((none, h.c.lifecycle_stage), else_=h.c.from_stage).label("stage"),
                      case((none, now - clock.of(h.c.entered)), (later, now - clock.of(
                          h.c.created)), else_=at - clock.of(h.c.created)).label("dur"))
               .where(first))
    moved = (select(h.c.to_stage, case((h.c.next_at <= as_of, clock.of(h.c.next_at)),
                                       else_=now) - at)
             .where(h.c.at <= as_of))
    middle = _middle_stays(engine, union_all(created, moved).subquery("stays")).subquery()
    return union_all(
        select(literal_column("'path'"), paths.c.path, func.count(), null())
        .group_by(paths.c.path),
        select(literal_column("'stay'"), middle.c[0], null(), middle.c[1]))


def handoff_query(as_of: datetime):
    """Handoffs created up to `as_of` in groups of (status at as_of, reject reason, lead
    source): count, how many are past their SLA at as_of, how many resolved before it. A
    handoff resolved after `as_of` is pending; its lead's source only if the lead is in the
    report."""
    H, L = t.handoffs, t.leads
    late = and_(H.c.status != PENDING, H.c.resolved_at > as_of)
    status = case((late, PENDING), else_=H.c.status)
    rows = (select(status.label("status"),
                   case((status == REJECTED, H.c.outcome_reason)).label("reason"),
                   L.c.source,
                   case((H.c.sla_due_at <= as_of, 1), else_=0).label("overdue"),
                   case((H.c.resolved_at < H.c.sla_due_at, 1), else_=0).label("in_time"))
            .select_from(H.outerjoin(L, and_(L.c.id == H.c.lead_id,
                                             L.c.created_at <= as_of)))
            .where(H.c.created_at <= as_of)
            .subquery("h"))
    return (select(rows.c.status, rows.c.reason, rows.c.source, func.count(),
                   func.sum(rows.c.overdue), func.sum(rows.c.in_time))
            .group_by(rows.c.status, rows.c.reason, rows.c.source))


def recycle_query(as_of: datetime):
    """Transitions into `recycled` up to `as_of` by (rule, the start of the reason that
    `recycle_reason` looks at): a few groups, classified in Python."""
    TR = t.transitions
    rows = (select(TR.c.rule, func.substr(TR.c.reason, 1, len(SLA_REASON_PREFIX))
                   .label("reason"))
            .where(TR.c.to_stage == RECYCLED, TR.c.at <= as_of)
            .subquery("r"))
    return select(rows.c.rule, rows.c.reason, func.count()).group_by(rows.c.rule,
                                                                     rows.c.reason)


@contextmanager
def scan_memory(conn: Connection) -> Iterator[None]:
    """On SQLite, SQLite's default 2 MiB page cache for the report, then the connection's
    own again: the report reads every row once (a big cache buys nothing), and SQLite sizes
    the memory of each sort and window by the cache (with the engine's 64 MiB, a million
    leads took the process to 250 MB, 62 MB with this)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    size = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    conn.exec_driver_sql("PRAGMA cache_size=-2000")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(size)}")
