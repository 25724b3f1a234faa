"""Waking sleeping leads when the rules change.

A lead the cycle looked at sleeps until its `next_check_at` (`nurture.core.next_check`):
the earliest moment its decision could change under the rules of that run. New rules (a
lowered MQL threshold, a new audience) can change it sooner, so the first run under a new
config fingerprint wakes every sleeping lead once — one UPDATE, with a version bump so a
decision made on a snapshot from before is dropped as stale and made again.
"""

from __future__ import annotations

from sqlalchemy import Engine, select, update

from nurture.core.domain import CYCLE_STAGES
from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.rows import insert_ignore

KEY = "cycle.rules_fingerprint"


def wake_for_new_rules(engine: Engine, fingerprint: str) -> int:
    """Clear every cycle-stage lead's `next_check_at` if the rules' fingerprint differs from
    the one the last wake recorded; returns how many leads were woken (0: same rules)."""
    kv, L = t.kv, t.leads
    with write_tx(engine) as conn:
        known = conn.execute(select(kv.c.value).where(kv.c.key == KEY)).scalar()
        if known == fingerprint:
            return 0
        woken = conn.execute(
            update(L).where(L.c.lifecycle_stage.in_(CYCLE_STAGES),
                            L.c.next_check_at.is_not(None))
            .values(next_check_at=None, version=L.c.version + 1)).rowcount
        if known is None:
            conn.execute(insert_ignore(engine, kv).values(key=KEY, value=fingerprint))
        conn.execute(update(kv).where(kv.c.key == KEY).values(value=fingerprint))
        return int(woken or 0)
