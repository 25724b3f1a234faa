"""The funnel report counted by the database (`funnel_report`), and the rows its reference
definition needs (`load_funnel_rows` for `nurture.core.funnel.compute_funnel`).

`funnel_report` is what the daily cycle and `nurture report funnel` run: three aggregate
queries (stages, handoffs, recycles) in one snapshot, so what comes back to Python is a few
rows per stage, status, source and rule, however many leads there are. `load_funnel_rows`
reads every lead, transition and handoff (memory grows with the store): it is kept for tests
that check the SQL against the pure definition.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.engine import Connection, Engine

from nurture.core.domain import RECYCLED
from nurture.core.funnel import FunnelHandoff, FunnelLead, FunnelTransition
from nurture.core.funnel_counts import (
    FUNNEL_PAIRS,
    PENDING,
    REJECTED,
    SLA_REASON_PREFIX,
    FunnelCounts,
    HandoffTally,
    funnel_dict,
    recycle_reason,
)
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


# -- the report in SQL ----------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _Clock(NamedTuple):
    """Times as values whose differences are exact stay durations, per backend: PostgreSQL
    subtracts timestamptz into an interval (a timedelta to the driver); SQLite's stored text
    becomes integer microseconds since 1970 (its `julianday` is a float: ~20 µs off, enough
    to reorder close stays and move a median across a rounding edge)."""

    of: Callable[[Any], Any]          # a stored time column
    at: Callable[[datetime], Any]     # `as_of`
    span: Callable[[Any], timedelta]  # a difference as the driver returns it


def _clock(engine: Engine) -> _Clock:
    if engine.dialect.name == "sqlite":
        def micros(col):  # 'YYYY-MM-DD HH:MM:SS.ffffff', the store's format
            return (cast(func.strftime("%s", col), Integer) * 1_000_000
                    + cast(func.substr(col, 21, 6), Integer))
        return _Clock(micros, lambda v: literal((v - _EPOCH) // _MICROSECOND, Integer),
                      lambda v: timedelta(microseconds=v))
    return _Clock(lambda col: col, lambda v: literal(v, t.UTCDateTime), lambda v: v)


def _stays(clock: _Clock, as_of: datetime):
    """Every stay of every lead in the report, as (lead_id, pos, stage, dur, open): `pos` is
    the stay's place in the lead's stage history (0 for the stage it was created in), `dur`
    how long it lasted (open stays to `as_of`), `open` 1 for the stay the lead is in at
    `as_of`. Transitions are ordered by (at, id) per lead; stays come from three cases:

    * the first transition gives the creation stage (from_stage, created_at → its `at`, or
      open to `as_of` when every transition of the lead is later);
    * each transition up to `as_of` starts a stay in its to_stage, up to the next one;
    * a lead without any transition is in lifecycle_stage since stage_entered_at.
    """
    L, TR = t.leads, t.transitions
    now = clock.at(as_of)
    w = {"partition_by": TR.c.lead_id, "order_by": (TR.c.at, TR.c.id)}
    at = clock.of(TR.c.at)
    o = (select(TR.c.lead_id, TR.c.from_stage, TR.c.to_stage, at.label("at"),
                clock.of(L.c.created_at).label("created"),
                func.row_number().over(**w).label("pos"),
                func.lead(at).over(**w).label("next_at"))
         .join_from(TR, L, L.c.id == TR.c.lead_id)
         .where(L.c.created_at <= as_of)
         .cte("ordered"))
    zero, one = literal_column("0"), literal_column("1")
    first = (select(o.c.lead_id, zero.label("pos"), o.c.from_stage.label("stage"),
                    (case((o.c.at <= now, o.c.at), else_=now) - o.c.created).label("dur"),
                    case((o.c.at <= now, zero), else_=one).label("open"))
             .where(o.c.pos == 1))
    moves = (select(o.c.lead_id, o.c.pos, o.c.to_stage,
                    case((o.c.next_at <= now, o.c.next_at), else_=now) - o.c.at,
                    case((o.c.next_at <= now, zero), else_=one))
             .where(o.c.at <= now))
    still = (select(L.c.id, zero, L.c.lifecycle_stage, now - clock.of(L.c.stage_entered_at),
                    one)
             .where(L.c.created_at <= as_of, ~exists().where(TR.c.lead_id == L.c.id)))
    return union_all(first, moves, still).cte("stays")


def _stage_query(clock: _Clock, as_of: datetime):
    """Rows ('stage', stage, reached, now_in, converted, NULL) — `converted`: leads whose
    stay in the next funnel stage ends later in their history than their first stay in
    this one — and ('median', stage, …, dur) for the middle one or two stays of a stage
    (by duration: the median's operands)."""
    s = _stays(clock, as_of)
    visits = (select(s.c.lead_id, s.c.stage, func.min(s.c.pos).label("first"),
                     func.max(s.c.pos).label("last"), func.max(s.c.open).label("now"))
              .group_by(s.c.lead_id, s.c.stage)
              .cte("visits"))
    va, vb = visits.alias("va"), visits.alias("vb")
    next_stage = case({str(a): str(b) for a, b in FUNNEL_PAIRS}, value=va.c.stage)
    counts = (select(literal_column("'stage'").label("kind"), va.c.stage,
                     func.count().label("reached"), func.sum(va.c.now).label("now_in"),
                     func.count(vb.c.lead_id).label("converted"), null().label("dur"))
              .select_from(va.outerjoin(vb, and_(vb.c.lead_id == va.c.lead_id,
                                                 vb.c.stage == next_stage,
                                                 vb.c.last > va.c.first)))
              .group_by(va.c.stage))
    ranked = select(s.c.stage, s.c.dur,
                    func.row_number().over(partition_by=s.c.stage, order_by=s.c.dur)
                    .label("rn"),
                    func.count().over(partition_by=s.c.stage).label("n")).subquery("ranked")
    # the middle one of n (n odd) or two (n even): 2·rn ∈ {n, n+1, n+2}
    middle = (select(literal_column("'median'"), ranked.c.stage, null(), null(), null(),
                     ranked.c.dur)
              .where((2 * ranked.c.rn).between(ranked.c.n, ranked.c.n + 2)))
    return union_all(counts, middle)


def _handoff_query(as_of: datetime):
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


def _recycle_query(as_of: datetime):
    """Transitions into `recycled` up to `as_of` by (rule, the start of the reason that
    `recycle_reason` looks at): a few groups, classified in Python."""
    TR = t.transitions
    rows = (select(TR.c.rule, func.substr(TR.c.reason, 1, len(SLA_REASON_PREFIX))
                   .label("reason"))
            .where(TR.c.to_stage == RECYCLED, TR.c.at <= as_of)
            .subquery("r"))
    return select(rows.c.rule, rows.c.reason, func.count()).group_by(rows.c.rule,
                                                                     rows.c.reason)


def funnel_report(engine: Engine, as_of: datetime) -> dict[str, Any]:
    """The funnel report at `as_of` (definitions: `nurture.core.funnel`), counted in SQL:
    equal to `compute_funnel(*load_funnel_rows(engine), as_of)` without reading the rows."""
    as_of = as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)
    clock = _clock(engine)
    now_in: Counter = Counter()
    reached: Counter = Counter()
    converted: Counter = Counter()
    stays: dict[str, list[timedelta]] = defaultdict(list)
    tally = HandoffTally()
    recycled: Counter = Counter()
    with _snapshot(engine) as conn:
        for kind, stage, n_reached, n_now, n_converted, dur in conn.execute(
                _stage_query(clock, as_of)):
            if kind == "median":
                stays[stage].append(clock.span(dur))
            else:
                reached[stage], now_in[stage] = int(n_reached), int(n_now)
                converted[stage] = int(n_converted)
        for status, reason, source, n, overdue, in_time in conn.execute(_handoff_query(as_of)):
            tally.count(status, reason, source, int(n), int(overdue), int(in_time))
        for rule, reason, n in conn.execute(_recycle_query(as_of)):
            recycled[recycle_reason(rule, reason)] += int(n)
    return funnel_dict(as_of, FunnelCounts(now_in, reached, converted, stays, tally, recycled))
