"""What the cycle reads: which leads are due (as id ranges) and each due lead's snapshot.

Every read works on a whole chunk with a handful of statements, never a query per lead.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, case, func, or_, select

from nurture.core.domain import (
    CYCLE_STAGES,
    IN_DOUBT,
    MARKETING_STAGES,
    SENDING,
    ActivityFact,
    HandoffStatus,
    LeadSnapshot,
    TouchFact,
)
from nurture.store import tables as t
from nurture.store.db import bind_time, fetch, is_sqlite, read_time
from nurture.store.rows import LEAD_FIELD_COUNT, LEAD_FIELD_SQL, chunks, lead_fields_of


def cycle_where(as_of: datetime, engaged_only: bool = False):
    """Leads the cycle looks at: in cycle stages and due (`next_check_at` unset or past);
    `engaged_only`: marketing leads with new, not yet evaluated activity."""
    if engaged_only:
        return and_(t.leads.c.activity_pending.is_(True),
                    t.leads.c.lifecycle_stage.in_(MARKETING_STAGES))
    return and_(t.leads.c.lifecycle_stage.in_(CYCLE_STAGES),
                or_(t.leads.c.next_check_at.is_(None), t.leads.c.next_check_at <= as_of))


def cycle_ranges(engine: Engine, as_of: datetime, chunk_size: int, engaged_only: bool = False
                 ) -> list[tuple[int, int, int]]:
    """Split the leads the cycle must look at into id ranges of about `chunk_size`:
    (first id, last id, number of leads). Leads waiting (an MQL inside its SLA, a recycled
    lead inside its wait) cost nothing."""
    q = select(t.leads.c.id).where(cycle_where(as_of, engaged_only)).order_by(t.leads.c.id)
    with engine.connect() as conn:
        ids = conn.execute(q).scalars().all()
    return [(c[0], c[-1], len(c)) for c in chunks(ids, chunk_size)]


def load_snapshots(engine: Engine, lo: int, hi: int, as_of: datetime, horizon_days: float,
                   points: dict[str, float], default_tz: str, any_stage: bool = False,
                   engaged_only: bool = False, ids: Sequence[int] | None = None
                   ) -> list[LeadSnapshot]:
    """Everything `evaluate` needs for the due leads with ids in [lo, hi]: four queries
    (`any_stage`: every lead in the range, not only those the cycle would look at;
    `ids`: only these leads — a stale decision's lead, loaded again)."""
    since = as_of - timedelta(days=horizon_days)
    with engine.connect() as conn:
        rows = _lead_rows(conn, lo, hi, as_of, any_stage, engaged_only, ids)
        acts = _activities(conn, lo, hi, since, as_of, points)
        tch = _touches(conn, lo, hi)
        hand = _open_handoffs(conn, lo, hi)
    out = []
    for r in rows:
        h = hand.get(r[0])
        fields = lead_fields_of(r[10:10 + LEAD_FIELD_COUNT])
        out.append(LeadSnapshot(
            id=r[0], email=fields["email"], fields=fields,
            timezone=fields["timezone"] or default_tz, lifecycle_stage=r[1],
            stage_entered_at=read_time(r[2]), engagement_since=read_time(r[3]),
            recycle_count=r[4], recycle_until=read_time(r[5]),
            suppressed=r[9] is not None, activities=acts.get(r[0], []),
            touches=tch.get(r[0], []), campaign=r[7], track=r[8],
            track_rounds=dict(_json(r[6]) or {}),
            handoff_id=h[0] if h else None, sla_due_at=h[1] if h else None,
            version=r[-1]))
    return out


def _stages(stages: Sequence[str]) -> str:
    return ", ".join(f"'{s}'" for s in stages)


# (id, stage, entered, engagement since, recycle count, recycle until, track rounds,
#  campaign, track, suppressed, lead fields…, version); leads.py's `cycle_where` in SQL
_LEADS_SQL = (
    "SELECT leads.id, leads.lifecycle_stage, leads.stage_entered_at, leads.engagement_since, "
    "leads.recycle_count, leads.recycle_until, campaign_states.track_rounds, "
    "campaign_states.campaign, campaign_states.track, suppressions.email, "
    f"{LEAD_FIELD_SQL}, leads.version FROM leads "
    "LEFT OUTER JOIN campaign_states ON campaign_states.lead_id = leads.id "
    "LEFT OUTER JOIN suppressions ON suppressions.email = leads.email "
    "WHERE leads.id BETWEEN ? AND ?")
_DUE_SQL = (f" AND leads.lifecycle_stage IN ({_stages(CYCLE_STAGES)}) "
            "AND (leads.next_check_at IS NULL OR leads.next_check_at <= ?)")
_ENGAGED_SQL = (f" AND leads.activity_pending = ? "
                f"AND leads.lifecycle_stage IN ({_stages(MARKETING_STAGES)})")


def _lead_rows(conn, lo: int, hi: int, as_of: datetime, any_stage: bool, engaged_only: bool,
               ids: Sequence[int] | None) -> list:
    """The leads of `load_snapshots` as driver rows (its `cycle_where`, in SQL text)."""
    sql, params = _LEADS_SQL, [lo, hi]
    if not any_stage and engaged_only:
        sql, params = sql + _ENGAGED_SQL, [*params, True]
    elif not any_stage:
        sql, params = sql + _DUE_SQL, [*params, bind_time(as_of, is_sqlite(conn))]
    if ids is not None:
        wanted = list(ids) or [None]
        sql += f" AND leads.id IN ({', '.join('?' * len(wanted))})"
        params += wanted
    return fetch(conn, sql + " ORDER BY leads.id", tuple(params))


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


_ACTIVITIES_SQL = (
    "SELECT lead_id, type, occurred_at FROM activities WHERE lead_id BETWEEN ? AND ? "
    "AND occurred_at >= ? AND occurred_at <= ? ORDER BY lead_id, occurred_at")


def _activities(conn, lo: int, hi: int, since: datetime, as_of: datetime,
                points: dict[str, float]) -> dict[int, list[ActivityFact]]:
    """The most numerous rows of a chunk: read as driver tuples, timestamps converted as
    `UTCDateTime` reads them (`read_time`)."""
    lite = is_sqlite(conn)
    acts: dict[int, list[ActivityFact]] = defaultdict(list)
    for lead_id, typ, at in fetch(conn, _ACTIVITIES_SQL, (lo, hi, bind_time(since, lite),
                                                          bind_time(as_of, lite))):
        acts[lead_id].append(ActivityFact(typ, read_time(at), points.get(typ, 0.0)))
    return acts


def _touches(conn, lo: int, hi: int) -> dict[int, list[TouchFact]]:
    T = t.touches
    tch: dict[int, list[TouchFact]] = defaultdict(list)
    for lead_id, camp, step, rnd, status, sent_at in conn.execute(
            select(T.c.lead_id, T.c.campaign, T.c.step, T.c.round, T.c.status,
                   # a touch that may have gone out counts from its slot
                   func.coalesce(T.c.sent_at, case(
                       (T.c.status.in_((IN_DOUBT, SENDING)), T.c.send_at), else_=None)))
            .where(T.c.lead_id.between(lo, hi))):
        tch[lead_id].append(TouchFact(camp, step, rnd, status, sent_at))
    return tch


def _open_handoffs(conn, lo: int, hi: int) -> dict[int, tuple[int, datetime]]:
    H = t.handoffs
    return {lead_id: (hid, due) for hid, lead_id, due in conn.execute(
        select(H.c.id, H.c.lead_id, H.c.sla_due_at)
        .where(H.c.lead_id.between(lo, hi), H.c.status == HandoffStatus.PENDING))}


def stage_counts(engine: Engine) -> dict[str, int]:
    """Leads per lifecycle stage (the demo's and the simulation's funnel line)."""
    L = t.leads
    with engine.connect() as conn:
        return dict(conn.execute(select(L.c.lifecycle_stage, func.count())
                                 .group_by(L.c.lifecycle_stage)).all())
