"""When a lead may be emailed: cadence, the weekly cap and the send window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from nurture.core.domain import TouchFact
from nurture.core.ledger import MAY_HAVE_SENT

WEEK = timedelta(days=7)


def last_sent_in_campaign(touches: list[TouchFact], campaign: str) -> datetime | None:
    last = None
    for t in touches:
        if t.campaign == campaign and t.status in MAY_HAVE_SENT and t.sent_at is not None and (
                last is None or t.sent_at > last):
            last = t.sent_at
    return last


def cadence_elapsed(last_sent: datetime | None, cadence_days: int, as_of: datetime) -> bool:
    """Due when `cadence_days` x 24 h have passed since the last sent touch (or never sent)."""
    return last_sent is None or as_of - last_sent >= timedelta(days=cadence_days)


def sent_this_week(touches: list[TouchFact], as_of: datetime) -> int:
    """Sent touches in the 7 x 24 h before `as_of` (scheduled ones ahead of it count too)."""
    since = as_of - WEEK
    return sum(1 for t in touches if t.status in MAY_HAVE_SENT and t.sent_at is not None
               and t.sent_at > since)


@lru_cache(maxsize=1024)
def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


def next_opening(cron: str | None, tz: str, as_of: datetime) -> datetime:
    """`as_of` if no window; else the window's next opening at or after `as_of`, in the
    lead's time zone, returned in UTC."""
    if not cron:
        return as_of
    return _next_opening(cron, tz, as_of)


@lru_cache(maxsize=65536)
def _next_opening(cron: str, tz: str, as_of: datetime) -> datetime:
    # cached: leads share cycle times, cadence slots and zones, and building a croniter
    # (parsing and expanding the expression) dominated a cycle's evaluation time
    # Iterate over naive local wall-clock times: croniter's own DST handling can return a
    # time before `as_of` in a repeated (fall-back) hour and skip openings just after a
    # spring-forward gap. Each wall time opens once, on its first pass (fold 0), like cron;
    # a wall time inside a gap maps (fold 0) to just past the gap.
    z = zone(tz)
    it = croniter(cron, as_of.astimezone(z).replace(tzinfo=None) - timedelta(microseconds=1))
    while True:
        nxt = it.get_next(datetime).replace(tzinfo=z).astimezone(UTC)
        if nxt >= as_of:  # loops only while `as_of` is in the second pass of a repeated hour
            return nxt
