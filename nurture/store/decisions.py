"""Writing a chunk's decisions: scores, stages, transitions, handoffs, lead events, campaign
state and planned touches, in one transaction, compare-and-set on each lead's version.

What to write is decided in `nurture.core` (evaluation, `nurture.core.routing` for the MQL
owner and the next look); this module only reserves the owner turn and writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

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
from nurture.store.db import ID_RANGE, bind_time, bulk_write, is_sqlite, retrying, write_tx
from nurture.store.kv import next_counter
from nurture.store.rows import IN_BATCH, chunks, insert_ids

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
        current = _lock_versions(engine, conn, sorted(wanted))
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


def _lock_versions(engine, conn, ids: list[int]) -> dict[int, int]:
    """The leads' current versions, locked: on PostgreSQL `FOR UPDATE` in id order (every
    writer locks leads in id order, so writers do not deadlock), one statement over an
    array; on SQLite the write transaction already holds the database's write lock."""
    if engine.dialect.name == "postgresql":
        return dict(conn.exec_driver_sql(
            "SELECT id, version FROM leads WHERE id = ANY(%b::bigint[]) ORDER BY id "
            "FOR UPDATE", (ids,)).all())
    L = t.leads
    current: dict[int, int] = {}
    for part in chunks(ids, IN_BATCH):
        current.update(conn.execute(select(L.c.id, L.c.version).where(L.c.id.in_(part))).all())
    return current


def _write(engine, conn, decisions: list[Decision], as_of: datetime, owners: Sequence[str],
           actor: str, events: Events, out: Applied) -> None:
    now = datetime.now(UTC)
    _write_leads(conn, decisions, as_of)
    _write_states(engine, conn, decisions, as_of, now)
    handoff_of = _write_handoffs(engine, conn, decisions, as_of, owners, out)
    _write_transitions(engine, conn, decisions, as_of, actor, events, handoff_of, out, now)
    if any(d.touch is not None for d in decisions):
        out.planned = _plan_touches(conn, decisions, as_of, now)


_LEADS_SQL = (
    "UPDATE leads SET lifecycle_stage = ?, stage_entered_at = ?, engagement_since = ?, "
    "recycle_count = ?, recycle_until = ?, buying_stage = ?, fit_score = ?, "
    "engagement_score = ?, score = ?, grade = ?, scored_at = ?, next_check_at = ?, "
    "activity_pending = ?, version = version + 1 WHERE id = ? AND version = ?")
_LEADS_PG = (
    "WITH v(stage, entered, since, rc, until, buying, fit, eng, score, grade, scored, "
    "next_check, pending, id, version) AS (SELECT * FROM unnest(%s::text[], "
    "%s::timestamptz[], %s::timestamptz[], %s::int[], %s::timestamptz[], %s::text[], "
    "%s::float8[], %s::float8[], %s::float8[], %s::text[], %s::timestamptz[], "
    "%s::timestamptz[], %s::boolean[], %s::bigint[], %s::int[])) "
    "UPDATE leads SET lifecycle_stage = v.stage, stage_entered_at = v.entered, "
    "engagement_since = v.since, recycle_count = v.rc, recycle_until = v.until, "
    "buying_stage = v.buying, fit_score = v.fit, engagement_score = v.eng, score = v.score, "
    "grade = v.grade, scored_at = v.scored, next_check_at = v.next_check, "
    "activity_pending = v.pending, version = leads.version + 1 "
    "FROM v WHERE leads.id = v.id AND leads.version = v.version AND " + ID_RANGE.format("leads"))


def _write_leads(conn, decisions: list[Decision], as_of: datetime) -> None:
    """Each lead's new state, compare-and-set on the version it was decided on (the rows
    are locked and their versions checked above; the condition stays all the same)."""
    lite = is_sqlite(conn)
    scored = bind_time(as_of, lite)
    bulk_write(conn, _LEADS_SQL, _LEADS_PG, [
        (str(d.lifecycle_stage), bind_time(d.stage_entered_at, lite),
         bind_time(d.engagement_since, lite), d.recycle_count,
         bind_time(d.recycle_until, lite), _text(d.buying_stage), _real(d.fit_score),
         _real(d.engagement_score), _real(d.score), _text(d.grade), scored,
         bind_time(next_check(d), lite), False, d.lead_id, d.version)
        for d in decisions])


def _real(value):
    """A float column's value as a float (PostgreSQL's arrays take one type per column)."""
    return None if value is None else float(value)


def _text(value):
    return None if value is None else str(value)


# the enrolment date stays while the lead stays in the same campaign
_STATES_SQL = (
    "INSERT INTO campaign_states (lead_id, campaign, track, track_rounds, enrolled_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (lead_id) DO UPDATE SET "
    "campaign = excluded.campaign, track = excluded.track, "
    "track_rounds = excluded.track_rounds, updated_at = excluded.updated_at, "
    "enrolled_at = CASE WHEN campaign_states.campaign = excluded.campaign "
    "THEN campaign_states.enrolled_at ELSE excluded.enrolled_at END")
_STATES_PG = _STATES_SQL.replace(
    "VALUES (?, ?, ?, ?, ?, ?)",
    "SELECT l, c, t, r::json, e, u FROM unnest(%s::bigint[], %s::text[], %s::text[], "
    "%s::text[], %s::timestamptz[], %s::timestamptz[]) AS v(l, c, t, r, e, u)")


def _write_states(engine, conn, decisions: list[Decision], as_of: datetime,
                  now: datetime) -> None:
    drop_state = [d.lead_id for d in decisions if d.campaign is None]
    for part in chunks(drop_state, IN_BATCH):
        conn.execute(t.campaign_states.delete().where(t.campaign_states.c.lead_id.in_(part)))
    lite = is_sqlite(conn)
    enrolled, stamp = bind_time(as_of, lite), bind_time(now, lite)
    bulk_write(conn, _STATES_SQL, _STATES_PG, [
        (d.lead_id, d.campaign, d.track, json.dumps(d.track_rounds), enrolled, stamp)
        for d in decisions if d.campaign is not None])


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


_TOUCHES_SQL = (
    "INSERT INTO touches (lead_id, campaign, track, step, round, variant, status, "
    "planned_at, send_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (lead_id, campaign, step, round) DO UPDATE SET status = excluded.status, "
    "track = excluded.track, variant = excluded.variant, planned_at = excluded.planned_at, "
    "send_at = excluded.send_at, updated_at = excluded.updated_at, attempts = 0, "
    f"retry_at = NULL, run_id = NULL, error = NULL WHERE touches.status = '{CANCELLED}'")
_TOUCHES_PG = _TOUCHES_SQL.replace(
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::int[], "
    "%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[])")


def _plan_touches(conn, decisions: list[Decision], as_of: datetime, now: datetime) -> int:
    """Insert planned touches; a step the ledger has as `cancelled` (never sent: the lead
    had left marketing) is planned again in place — unique per lead × campaign × step ×
    round either way."""
    lite = is_sqlite(conn)
    planned, stamp = bind_time(as_of, lite), bind_time(now, lite)
    rows = [(d.lead_id, p.campaign, p.track, p.step, p.round, p.variant, str(PLANNED),
             planned, bind_time(p.send_at, lite), stamp)
            for d in decisions if (p := d.touch) is not None]
    bulk_write(conn, _TOUCHES_SQL, _TOUCHES_PG, rows)
    return len(rows)
