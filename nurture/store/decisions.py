"""Writing a chunk's decisions: scores, stages, transitions, handoffs, lead events, campaign
state and planned touches, in one transaction, compare-and-set on each lead's version.

What to write is decided in `nurture.core` (evaluation, `nurture.core.routing` for the MQL
owner and the next look); this module only reserves the owner turn and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, case, insert, select, update

from nurture.core.domain import (
    CANCELLED,
    MQL,
    PLANNED,
    SYSTEM_ACTOR,
    Decision,
    HandoffStatus,
    LeadEvent,
)
from nurture.core.routing import assign_owners, next_check
from nurture.services.ports import Applied
from nurture.store import tables as t
from nurture.store.db import retrying, write_tx
from nurture.store.kv import next_counter
from nurture.store.rows import IN_BATCH, chunks, insert_ids, upsert

Events = dict[int, list[LeadEvent | None]]


def apply_decisions(engine: Engine, decisions: list[Decision], as_of: datetime,
                    owners: Sequence[str], actor: str, events: Events | None = None,
                    touch_only: Sequence[tuple[int, int]] = ()) -> Applied:
    """Write a chunk's decisions; a decision whose lead changed since it was loaded is not
    written — its id comes back in `stale` to be loaded and decided again.

    The leads are locked (SQLite: the write lock; PostgreSQL: `FOR UPDATE`) before their
    versions are compared. `events[lead_id]` aligns with the decision's transitions (None:
    no event). `touch_only`: (lead id, version) of leads looked at but not decided (instant
    routing): their new-activity flag is cleared, by the same compare-and-set."""
    return retrying(lambda: _apply(engine, decisions, as_of, owners, actor, events or {},
                                   touch_only))


def _apply(engine, decisions, as_of, owners, actor, events, touch_only) -> Applied:
    L = t.leads
    wanted = {d.lead_id: d.version for d in decisions} | dict(touch_only)
    with write_tx(engine) as conn:
        current: dict[int, int] = {}
        for part in chunks(sorted(wanted), IN_BATCH):
            q = select(L.c.id, L.c.version).where(L.c.id.in_(part)).order_by(L.c.id)
            if engine.dialect.name == "postgresql":
                q = q.with_for_update(of=L)
            current.update(conn.execute(q).all())
        stale = {i for i, v in wanted.items() if current.get(i) != v}
        fresh = [d for d in decisions if d.lead_id not in stale]
        idle = [i for i, _ in touch_only if i not in stale]
        for part in chunks(idle, IN_BATCH):
            conn.execute(update(L).where(L.c.id.in_(part))
                         .values(activity_pending=False, version=L.c.version + 1))
        out = Applied(stale=stale)
        if fresh:
            _write(engine, conn, fresh, as_of, owners, actor, events, out)
    return out


def _write(engine, conn, decisions: list[Decision], as_of: datetime, owners: Sequence[str],
           actor: str, events: Events, out: Applied) -> None:
    now = datetime.now(UTC)
    _write_leads(conn, decisions, as_of)
    _write_states(engine, conn, decisions, as_of, now)
    handoff_of = _write_handoffs(engine, conn, decisions, as_of, owners, out)
    _write_transitions(engine, conn, decisions, as_of, actor, events, handoff_of, out, now)
    touches = [{"lead_id": d.lead_id, "campaign": p.campaign, "track": p.track,
                "step": p.step, "round": p.round, "variant": p.variant,
                "status": PLANNED, "planned_at": as_of, "send_at": p.send_at,
                "updated_at": now}
               for d in decisions if (p := d.touch) is not None]
    if touches:
        out.planned = _plan_touches(engine, conn, touches)


def _write_leads(conn, decisions: list[Decision], as_of: datetime) -> None:
    L = t.leads
    conn.execute(update(L).where(L.c.id == bindparam("b_id"),
                                 L.c.version == bindparam("b_version"))
                 .values(version=L.c.version + 1), [
        {"b_id": d.lead_id, "b_version": d.version, "lifecycle_stage": d.lifecycle_stage,
         "stage_entered_at": d.stage_entered_at, "engagement_since": d.engagement_since,
         "recycle_count": d.recycle_count, "recycle_until": d.recycle_until,
         "buying_stage": d.buying_stage, "fit_score": d.fit_score,
         "engagement_score": d.engagement_score, "score": d.score, "grade": d.grade,
         "scored_at": as_of, "next_check_at": next_check(d), "activity_pending": False}
        for d in decisions])


def _write_states(engine, conn, decisions: list[Decision], as_of: datetime,
                  now: datetime) -> None:
    drop_state = [d.lead_id for d in decisions if d.campaign is None]
    for part in chunks(drop_state, IN_BATCH):
        conn.execute(t.campaign_states.delete().where(t.campaign_states.c.lead_id.in_(part)))
    rows = [{"lead_id": d.lead_id, "campaign": d.campaign, "track": d.track,
             "track_rounds": d.track_rounds, "enrolled_at": as_of, "updated_at": now}
            for d in decisions if d.campaign is not None]
    if not rows:
        return
    cs = t.campaign_states
    stmt = upsert(engine, cs)
    stmt = stmt.on_conflict_do_update(
        index_elements=[cs.c.lead_id],
        set_={"campaign": stmt.excluded.campaign, "track": stmt.excluded.track,
              "track_rounds": stmt.excluded.track_rounds,
              "updated_at": stmt.excluded.updated_at,
              # keep the enrolment date while the lead stays in the same campaign
              "enrolled_at": case((cs.c.campaign == stmt.excluded.campaign,
                                   cs.c.enrolled_at), else_=stmt.excluded.enrolled_at)})
    conn.execute(stmt, rows)


def _write_handoffs(engine, conn, decisions: list[Decision], as_of: datetime,
                    owners: Sequence[str], out: Applied) -> dict[int, int]:
    """Expire handoffs past their SLA, open new MQLs' handoffs (owner by round-robin);
    returns lead id -> new handoff id. One open handoff per lead is a unique index."""
    H = t.handoffs
    expire = [d.lead_id for d in decisions if d.expire_handoff]
    for part in chunks(expire, IN_BATCH):
        conn.execute(update(H).where(H.c.lead_id.in_(part),
                                     H.c.status == HandoffStatus.PENDING)
                     .values(status=HandoffStatus.EXPIRED, resolved_at=as_of,
                             outcome_reason="sla_expired"))
    mqls = [d for d in decisions if d.handoff is not None]
    if not mqls:
        return {}
    first = next_counter(engine, conn, "mql_owner", len(mqls))
    out.owners = assign_owners([d.lead_id for d in mqls], owners, first)
    hrows = [{"lead_id": d.lead_id, "owner": out.owners[d.lead_id],
              "status": HandoffStatus.PENDING, "rule": d.handoff.rule,
              "reason": d.handoff.reason, "score": d.score, "grade": d.grade,
              "created_at": as_of, "sla_due_at": d.handoff.sla_due_at} for d in mqls]
    ids = insert_ids(engine, conn, H, hrows)
    out.mqls = len(mqls)
    return {r["lead_id"]: hid for r, hid in zip(hrows, ids, strict=True)}


def _write_transitions(engine, conn, decisions: list[Decision], as_of: datetime, actor: str,
                       events: Events, handoff_of: dict[int, int], out: Applied,
                       now: datetime) -> None:
    """Transitions, and the lead events they cause (the MQL transition names its handoff:
    one MQL transition per handoff is a unique index)."""
    trows: list[dict[str, Any]] = []
    tevents: list[LeadEvent | None] = []
    for d in decisions:
        evs = events.get(d.lead_id) or []
        for i, tr in enumerate(d.transitions):
            trows.append({"lead_id": d.lead_id, "from_stage": tr.from_stage,
                          "to_stage": tr.to_stage, "reason": tr.reason, "rule": tr.rule,
                          "actor": actor if tr.actor == SYSTEM_ACTOR else tr.actor,
                          "note": tr.note, "at": as_of,
                          "handoff_id": handoff_of.get(d.lead_id)
                          if tr.to_stage == MQL else None})
            tevents.append(evs[i] if i < len(evs) else None)
    if not trows:
        return
    TR = t.transitions
    tids = insert_ids(engine, conn, TR, trows)
    erows = []
    for tid, row, ev in zip(tids, trows, tevents, strict=True):
        if ev is None:
            continue
        if ev.kind == "mql":
            ev.owner = out.owners.get(row["lead_id"])
        erows.append({"lead_id": row["lead_id"], "transition_id": tid, "kind": ev.kind,
                      "payload": ev.payload(as_of), "created_at": now})
        out.events.append(ev)
    if erows:
        conn.execute(insert(t.lead_events), erows)


def _plan_touches(engine, conn, rows: list[dict[str, Any]]) -> int:
    """Insert planned touches; a step the ledger has as `cancelled` (never sent: the lead
    had left marketing) is planned again in place — unique per lead × campaign × step ×
    round either way."""
    T = t.touches
    stmt = upsert(engine, T)
    stmt = stmt.on_conflict_do_update(
        index_elements=[T.c.lead_id, T.c.campaign, T.c.step, T.c.round],
        set_={"status": PLANNED, "track": stmt.excluded.track,
              "variant": stmt.excluded.variant, "planned_at": stmt.excluded.planned_at,
              "send_at": stmt.excluded.send_at, "updated_at": stmt.excluded.updated_at,
              "attempts": 0, "retry_at": None, "run_id": None, "error": None},
        where=T.c.status == CANCELLED)
    conn.execute(stmt, rows)
    return len(rows)
