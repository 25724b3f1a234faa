"""Lead events outbox: `nurture.lead.*` events are written in the same transaction as the
transition that caused them, then claimed by a live run, emitted and marked. A run that dies
between emitting and marking leaves them claimed; the next run re-emits them under the same
event id, which Prefect's event store de-duplicates — so each is announced exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, or_, select, update

from nurture.store import tables as t
from nurture.store.db import write_tx
from nurture.store.runs import RunStore


@dataclass(slots=True, frozen=True)
class PendingEvent:
    id: int
    lead_id: int
    kind: str
    payload: dict[str, Any]
    created_at: datetime

    @property
    def key(self) -> str:
        """What names this event for ever: its row id alone repeats in another database
        (a fresh or copied store reporting to the same Prefect server), its creation time
        with it does not; a re-emission of the same row gives the same key."""
        return f"lead-event-{self.id}-{self.created_at.isoformat()}"


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
                .returning(E.c.id, E.c.lead_id, E.c.kind, E.c.payload, E.c.created_at)).all()
        return sorted((PendingEvent(*r) for r in got), key=lambda e: e.id)

    def context(self, events: list[PendingEvent]
                ) -> tuple[dict[int, str], dict[int, dict[str, str]]]:
        """What an event's payload may lack: the lead's campaign (sales feedback does not know
        it) and the stages of the transition that caused it. Reads only."""
        C = t.campaign_states
        lead_ids = sorted({ev.lead_id for ev in events})
        with self.engine.connect() as conn:
            campaigns = dict(conn.execute(select(C.c.lead_id, C.c.campaign)
                                          .where(C.c.lead_id.in_(lead_ids))).tuples().all())
            # a lead handed to sales on its first cycle has no campaign state: the campaign its
            # MQL event named (whose audience it is) stands for it
            missing = [i for i in lead_ids if i not in campaigns]
            if missing:
                E = t.lead_events
                for lead_id, payload in conn.execute(
                        select(E.c.lead_id, E.c.payload).where(E.c.lead_id.in_(missing))
                        .order_by(E.c.id.desc())):
                    if lead_id not in campaigns and (payload or {}).get("campaign"):
                        campaigns[lead_id] = payload["campaign"]
            stages: dict[int, dict[str, str]] = {}
            E, TR = t.lead_events, t.transitions
            for ev_id, frm, to in conn.execute(
                    select(E.c.id, TR.c.from_stage, TR.c.to_stage)
                    .join(TR, TR.c.id == E.c.transition_id)
                    .where(E.c.id.in_([ev.id for ev in events]))):
                stages[ev_id] = {"from": frm, "to": to}
        return campaigns, stages

    def mark_emitted(self, ids: list[int], run_id: int) -> None:
        if not ids:
            return
        E = t.lead_events
        with write_tx(self.engine) as conn:
            conn.execute(update(E).where(E.c.id.in_(ids), E.c.claimed_by == run_id,
                                         E.c.emitted_at.is_(None))
                         .values(emitted_at=datetime.now(UTC)))

    def pending_count(self) -> int:
        E = t.lead_events
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(E)
                                .where(E.c.emitted_at.is_(None))).scalar_one()
