"""One lead with everything about it, for `nurture lead show` and test sends as a lead."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from sqlalchemy import Engine, func, select

from nurture.core.lead_record import LeadRecord
from nurture.store import tables as t
from nurture.store.rows import lead_fields

_RECORD_FIELDS = tuple(f.name for f in fields(LeadRecord))


def lead_detail(engine: Engine, email: str) -> dict[str, Any] | None:
    """The lead (`row`: a `LeadRecord`) with its fields, touches, transitions, handoffs
    (plain dicts, oldest first), suppression and activity count; None when unknown."""
    L, cs = t.leads, t.campaign_states
    with engine.connect() as conn:
        found = conn.execute(select(L, cs.c.campaign, cs.c.track, cs.c.track_rounds)
                             .outerjoin(cs, cs.c.lead_id == L.c.id)
                             .where(L.c.email == email)).first()
        if found is None:
            return None
        m = found._mapping
        record = LeadRecord(**{k: m[k] for k in _RECORD_FIELDS if k in m})
        record = _with_defaults(record)
        T, TR, H, S = t.touches, t.transitions, t.handoffs, t.suppressions
        touches = [dict(r._mapping) for r in conn.execute(
            select(T.c.id, T.c.campaign, T.c.track, T.c.step, T.c.round, T.c.variant,
                   T.c.status, T.c.send_at, T.c.sent_at, T.c.subject, T.c.error,
                   T.c.provider_message_id)
            .where(T.c.lead_id == record.id).order_by(T.c.planned_at, T.c.id))]
        transitions = [dict(r._mapping) for r in conn.execute(
            select(TR.c.from_stage, TR.c.to_stage, TR.c.reason, TR.c.rule, TR.c.actor,
                   TR.c.note, TR.c.at).where(TR.c.lead_id == record.id)
            .order_by(TR.c.at, TR.c.id))]
        handoffs = [dict(r._mapping) for r in conn.execute(
            select(H.c.owner, H.c.status, H.c.rule, H.c.reason, H.c.created_at,
                   H.c.sla_due_at, H.c.resolved_at, H.c.outcome_reason)
            .where(H.c.lead_id == record.id).order_by(H.c.created_at, H.c.id))]
        suppression = conn.execute(select(S.c.reason, S.c.created_at)
                                   .where(S.c.email == email)).first()
        activities = conn.execute(select(func.count()).select_from(t.activities)
                                  .where(t.activities.c.lead_id == record.id)).scalar_one()
    return {"row": record, "fields": lead_fields(record), "touches": touches,
            "transitions": transitions, "handoffs": handoffs,
            "suppression": dict(suppression._mapping) if suppression else None,
            "activity_count": activities}


def _with_defaults(record: LeadRecord) -> LeadRecord:
    """NULL JSON columns read as empty mappings, as the record's type promises."""
    if record.attributes is None or record.track_rounds is None:
        return replace(record, attributes=record.attributes or {},
                       track_rounds=record.track_rounds or {})
    return record
