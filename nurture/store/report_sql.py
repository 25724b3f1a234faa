"""SQL building blocks the results queries share: backend-neutral date arithmetic, the
activity kinds that count as engagement, one row of engagement flags per touch, and reading
several queries in one snapshot."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, case, cast, func, literal, literal_column, select
from sqlalchemy.engine import Engine

from nurture.core.reporting import Window
from nurture.store import tables as t

HUMAN_OPEN, MACHINE_OPEN = "email_open", "email_machine_open"
HUMAN_CLICK, SCANNER_CLICK = "email_click", "email_scanner_click"
UNSUBSCRIBE, SPAM = "unsubscribe", "spam_report"
ENGAGEMENT = (HUMAN_OPEN, MACHINE_OPEN, HUMAN_CLICK, SCANNER_CLICK, UNSUBSCRIBE, SPAM)


def in_window(col, w: Window) -> list:
    out = []
    if w.start is not None:
        out.append(col >= w.start)
    if w.end is not None:
        out.append(col < w.end)
    return out


def days_between(engine: Engine, a, b):
    """Fractional days from `a` to `b` (SQL expression)."""
    if engine.dialect.name == "sqlite":
        return func.julianday(b) - func.julianday(a)
    return func.extract("epoch", b - a) / 86400.0


def plus_days(engine: Engine, col, days: float):
    """`col` + `days` as a value comparable with stored datetimes on the backend."""
    if engine.dialect.name == "sqlite":
        # stored as 'YYYY-MM-DD HH:MM:SS.ffffff': strftime keeps that shape
        return func.strftime("%Y-%m-%d %H:%M:%f000", col, f"{days:+f} days")
    return col + literal(timedelta(days=days), Interval())


def touch_id_of(engine: Engine):
    """The touch an activity belongs to (`properties.touch_id`, set by the webhook)."""
    A = t.activities
    if engine.dialect.name == "postgresql":
        return cast(A.c.properties.op("->>")(literal_column("'touch_id'")), t.Id)
    return func.json_extract(A.c.properties, "$.touch_id")


def month_of(engine: Engine, col):
    if engine.dialect.name == "sqlite":
        return func.strftime("%Y-%m", col)
    return func.to_char(col, "YYYY-MM")


def read_snapshot(engine: Engine, *queries) -> list[list[dict[str, Any]]]:
    """Run the queries in one read snapshot (REPEATABLE READ on PostgreSQL)."""
    opts: dict = ({"isolation_level": "REPEATABLE READ"}
                  if engine.dialect.name == "postgresql" else {})
    with engine.connect().execution_options(**opts) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")  # months are UTC months
        return [[dict(r._mapping) for r in conn.execute(q)] for q in queries]


def touch_engagement(engine: Engine, since: datetime | None):
    """One row per touch with engagement: flags per activity kind (0/1)."""
    A = t.activities
    tid = touch_id_of(engine)

    def flag(*kinds: str):
        return func.max(case((A.c.type.in_(kinds), 1), else_=0))

    q = (select(tid.label("tid"),
                flag(HUMAN_OPEN, HUMAN_CLICK).label("opened"),
                flag(MACHINE_OPEN).label("machine_open"),
                flag(HUMAN_CLICK).label("clicked"),
                flag(SCANNER_CLICK).label("scanner_click"),
                flag(UNSUBSCRIBE).label("unsubscribed"),
                flag(SPAM).label("spam"))
         .where(A.c.type.in_(ENGAGEMENT), tid.is_not(None)).group_by(tid))
    if since is not None:
        q = q.where(A.c.occurred_at >= since)
    return q.subquery("eng")
