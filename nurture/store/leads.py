"""What the cycle reads: which leads are due (as id ranges) and each due lead's snapshot.

Every read works on a whole chunk with a handful of statements, never a query per lead.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, case, func, literal_column, or_, select

from nurture.core.domain import (
    CYCLE_STAGES,
    IN_DOUBT,
    MARKETING_STAGES,
    PLANNED,
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


# touches the send phase may still have to send or settle (`nurture.services.sending`)
OPEN_TOUCH = (PLANNED, SENDING, IN_DOUBT)


def cycle_ranges(engine: Engine, as_of: datetime, chunk_size: int, engaged_only: bool = False
                 ) -> list[tuple[int, int, int]]:
    """Split the leads the cycle must look at into id ranges of about `chunk_size`:
    (first id, last id, number of leads). Leads asleep until their next check (a touch
    sent and its cadence running, an MQL inside its SLA, a recycled lead inside its wait)
    cost nothing — unless a touch of theirs is still to be sent or settled (a retry, a
    release, a run that stopped): the send phase works by lead range, so those are in."""
    # numbered in id order and grouped by the database: a million due leads come back as
    # two hundred rows, never as a million ids held here
    ids = select(t.leads.c.id.label("id")).where(cycle_where(as_of, engaged_only))
    if not engaged_only:
        T = t.touches
        ids = ids.union(select(T.c.lead_id).where(T.c.status.in_(OPEN_TOUCH)))
    ids = ids.subquery()
    rn = func.row_number().over(order_by=ids.c.id).label("rn")
    due = select(ids.c.id, rn).subquery()
    # integer division on both backends (a plain `/` operator: no cast, no FLOOR)
    bucket = (due.c.rn - 1).self_group().op("/")(literal_column(str(max(int(chunk_size), 1))))
    q = (select(func.min(due.c.id), func.max(due.c.id), func.count())
         .group_by(bucket).order_by(func.min(due.c.id)))
    with engine.connect() as conn:
        return [(lo, hi, n) for lo, hi, n in conn.execute(q)]


def load_snapshots(engine: Engine, lo: int, hi: int, as_of: datetime, horizon_days: float,
                   points: dict[str, float], default_tz: str, any_stage: bool = False,
                   engaged_only: bool = False, ids: Sequence[int] | None = None
                   ) -> list[LeadSnapshot]:
    """Everything `evaluate` needs for the due leads with ids in [lo, hi]: four queries
    (`any_stage`: every lead in the range, not only those the cycle would look at;
    `ids`: only these leads — a stale decision's lead, loaded again)."""
    since = as_of - timedelta(days=horizon_days)
    acts: dict[int, list[ActivityFact]] = {}
    tch: dict[int, list[TouchFact]] = {}
    hand: dict[int, tuple[int, datetime]] = {}
    ahead: dict[int, datetime] = {}
    with engine.connect() as conn:
        rows = _lead_rows(conn, lo, hi, as_of, any_stage, engaged_only, ids)
        for part in _lead_sets(lo, hi, [r[0] for r in rows]):
            acts.update(_activities(conn, part, since, as_of, points))
            tch.update(_touches(conn, part))
            hand.update(_open_handoffs(conn, part))
            ahead.update(_next_activities(conn, part, as_of))
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
            version=r[-1], next_activity_at=ahead.get(r[0])))
    return out


def _next_activities(conn, part: LeadSet, as_of: datetime) -> dict[int, datetime]:
    """Each lead's first activity after `as_of` (a history loaded ahead, as simulations do):
    the lead wakes when it happens (`nurture.core.next_check`)."""
    A = t.activities
    return dict(conn.execute(
        select(A.c.lead_id, func.min(A.c.occurred_at))
        .where(_among(A.c.lead_id, part), A.c.occurred_at > as_of)
        .group_by(A.c.lead_id)).all())


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


# A range where fewer than this share of the leads are due (a steady-state day: most leads
# asleep until their next check) reads the rest of a lead's data by naming the due leads,
# so the cost follows the due leads, not the width of the range.
SPARSE = 0.5
IN_BATCH = 900  # ids per `IN (…)` (well under SQLite's parameter limit)
LeadSet = tuple[int, int] | list[int]  # an id range (lo, hi), or the ids themselves


def _lead_sets(lo: int, hi: int, ids: list[int]) -> list[LeadSet]:
    if not ids:
        return []
    if len(ids) >= SPARSE * (hi - lo + 1):
        return [(lo, hi)]
    return [list(part) for part in chunks(ids, IN_BATCH)]


def _among(column, part: LeadSet):
    return column.between(*part) if isinstance(part, tuple) else column.in_(part)


def _among_sql(part: LeadSet) -> tuple[str, tuple]:
    if isinstance(part, tuple):
        return "lead_id BETWEEN ? AND ?", part
    return f"lead_id IN ({', '.join('?' * len(part))})", tuple(part)


_ACTIVITIES_SQL = (
    "SELECT lead_id, type, occurred_at FROM activities WHERE {among} "
    "AND occurred_at >= ? AND occurred_at <= ? ORDER BY lead_id, occurred_at")


def _activities(conn, part: LeadSet, since: datetime, as_of: datetime,
                points: dict[str, float]) -> dict[int, list[ActivityFact]]:
    """The most numerous rows of a chunk: read as driver tuples, timestamps converted as
    `UTCDateTime` reads them (`read_time`)."""
    lite = is_sqlite(conn)
    among, params = _among_sql(part)
    acts: dict[int, list[ActivityFact]] = defaultdict(list)
    for lead_id, typ, at in fetch(conn, _ACTIVITIES_SQL.format(among=among),
                                  (*params, bind_time(since, lite), bind_time(as_of, lite))):
        acts[lead_id].append(ActivityFact(typ, read_time(at), points.get(typ, 0.0)))
    return acts


def _touches(conn, part: LeadSet) -> dict[int, list[TouchFact]]:
    T = t.touches
    tch: dict[int, list[TouchFact]] = defaultdict(list)
    for lead_id, camp, step, rnd, status, sent_at in conn.execute(
            select(T.c.lead_id, T.c.campaign, T.c.step, T.c.round, T.c.status,
                   # a touch that may have gone out counts from its slot
                   func.coalesce(T.c.sent_at, case(
                       (T.c.status.in_((IN_DOUBT, SENDING)), T.c.send_at), else_=None)))
            .where(_among(T.c.lead_id, part))):
        tch[lead_id].append(TouchFact(camp, step, rnd, status, sent_at))
    return tch


def _open_handoffs(conn, part: LeadSet) -> dict[int, tuple[int, datetime]]:
    H = t.handoffs
    return {lead_id: (hid, due) for hid, lead_id, due in conn.execute(
        select(H.c.id, H.c.lead_id, H.c.sla_due_at)
        .where(_among(H.c.lead_id, part), H.c.status == HandoffStatus.PENDING))}


def stage_counts(engine: Engine) -> dict[str, int]:
    """Leads per lifecycle stage (the demo's and the simulation's funnel line)."""
    L = t.leads
    with engine.connect() as conn:
        return dict(conn.execute(select(L.c.lifecycle_stage, func.count())
                                 .group_by(L.c.lifecycle_stage)).all())
