"""What the cycle reads: which leads are due (as id ranges) and each due lead's snapshot.

Every read works on a whole chunk with a handful of statements, never a query per lead.
"""

from __future__ import annotations

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
from nurture.store.rows import lead_field_columns, lead_fields


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
    where = (t.leads.c.id.between(lo, hi) if any_stage
             else and_(t.leads.c.id.between(lo, hi), cycle_where(as_of, engaged_only)))
    if ids is not None:
        where = and_(where, t.leads.c.id.in_(list(ids)))
    L, cs = t.leads, t.campaign_states
    with engine.connect() as conn:
        rows = conn.execute(
            select(L.c.id, L.c.lifecycle_stage, L.c.stage_entered_at,
                   L.c.engagement_since, L.c.recycle_count, L.c.recycle_until, L.c.version,
                   *lead_field_columns(L), cs.c.campaign.label("cs_campaign"),
                   cs.c.track.label("cs_track"),
                   cs.c.track_rounds, t.suppressions.c.email.label("suppressed"))
            .outerjoin(cs, cs.c.lead_id == L.c.id)
            .outerjoin(t.suppressions, t.suppressions.c.email == L.c.email)
            .where(where).order_by(L.c.id)).all()
        acts = _activities(conn, lo, hi, since, as_of, points)
        tch = _touches(conn, lo, hi)
        hand = _open_handoffs(conn, lo, hi)
        ahead = _next_activities(conn, lo, hi, as_of)
    out = []
    for r in rows:
        h = hand.get(r.id)
        out.append(LeadSnapshot(
            id=r.id, email=r.email, fields=lead_fields(r),
            timezone=r.timezone or default_tz, lifecycle_stage=r.lifecycle_stage,
            stage_entered_at=r.stage_entered_at, engagement_since=r.engagement_since,
            recycle_count=r.recycle_count, recycle_until=r.recycle_until,
            suppressed=r.suppressed is not None, activities=acts.get(r.id, []),
            touches=tch.get(r.id, []), campaign=r.cs_campaign, track=r.cs_track,
            track_rounds=dict(r.track_rounds or {}),
            handoff_id=h[0] if h else None, sla_due_at=h[1] if h else None,
            version=r.version, next_activity_at=ahead.get(r.id)))
    return out


def _next_activities(conn, lo: int, hi: int, as_of: datetime) -> dict[int, datetime]:
    """Each lead's first activity after `as_of` (a history loaded ahead, as simulations do):
    the lead wakes when it happens (`nurture.core.next_check`)."""
    A = t.activities
    return dict(conn.execute(
        select(A.c.lead_id, func.min(A.c.occurred_at))
        .where(A.c.lead_id.between(lo, hi), A.c.occurred_at > as_of)
        .group_by(A.c.lead_id)).all())


def _activities(conn, lo: int, hi: int, since: datetime, as_of: datetime,
                points: dict[str, float]) -> dict[int, list[ActivityFact]]:
    A = t.activities
    acts: dict[int, list[ActivityFact]] = defaultdict(list)
    for lead_id, typ, at in conn.execute(
            select(A.c.lead_id, A.c.type, A.c.occurred_at)
            .where(A.c.lead_id.between(lo, hi), A.c.occurred_at >= since,
                   A.c.occurred_at <= as_of)
            .order_by(A.c.lead_id, A.c.occurred_at)):
        acts[lead_id].append(ActivityFact(typ, at, points.get(typ, 0.0)))
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
