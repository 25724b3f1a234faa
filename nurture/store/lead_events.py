"""Lead events outbox: `nurture.lead.*` events are written in the same transaction as the
transition that caused them, then claimed by a live run, emitted and marked. A run that dies
between emitting and marking leaves them claimed; the next run re-emits them under the same
event id, which Prefect's event store de-duplicates — so each is announced exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select, update

from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.runs import RunStore


@dataclass(slots=True, frozen=True)
class PendingEvent:
    id: int
    lead_id: int
    kind: str
    payload: dict[str, Any]


class LeadEventOutbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runs = RunStore(engine)

    def claim(self, run_id: int, lapse: timedelta, limit: int = 1000) -> list[PendingEvent]:
        E = t.lead_events
        with self.engine.connect() as conn:
            rows = conn.execute(select(E.c.id, E.c.claimed_by).where(E.c.emitted_at.is_(None))
                                .order_by(E.c.id).limit(limit)).all()
        if not rows:
            return []
        owners = {r.claimed_by for r in rows if r.claimed_by not in (None, run_id)}
        dead = self.runs.take_over(owners, lapse) if owners else set()
        ids = [r.id for r in rows if r.claimed_by in (None, run_id) or r.claimed_by in dead]
        if not ids:
            return []
        with write_tx(self.engine) as conn:
            got = conn.execute(
                update(E).where(E.c.id.in_(ids), E.c.emitted_at.is_(None),
                                or_(E.c.claimed_by.is_(None), E.c.claimed_by == run_id,
                                    E.c.claimed_by.in_(sorted(dead) or [-1])))
                .values(claimed_by=run_id, claimed_at=datetime.now(UTC))
                .returning(E.c.id, E.c.lead_id, E.c.kind, E.c.payload)).all()
        return sorted((PendingEvent(*r) for r in got), key=lambda e: e.id)

    def mark_emitted(self, ids: list[int], run_id: int) -> None:
        if not ids:
            return
        E = t.lead_events
        with write_tx(self.engine) as conn:
            conn.execute(update(E).where(E.c.id.in_(ids), E.c.claimed_by == run_id,
                                         E.c.emitted_at.is_(None))
                         .values(emitted_at=datetime.now(UTC)))

    def pending_count(self) -> int:
        from sqlalchemy import func

        E = t.lead_events
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(E)
                                .where(E.c.emitted_at.is_(None))).scalar_one()
