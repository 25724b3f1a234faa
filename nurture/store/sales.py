"""Sales feedback and handoffs in the lead store: one transaction per piece of feedback, the
lead row locked while the decision is made so two doors cannot both move it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine

from nurture.core.domain import HandoffStatus, LeadNotFound
from nurture.core.sales import FeedbackOutcome, LeadState
from nurture.store import tables as t
from nurture.store.db import retrying, write_tx

# a CRM delivery claimed by a deliverer that died is offered again after this long
CRM_CLAIM_LEASE = timedelta(minutes=10)


class CrmDelivery(StrEnum):
    """A handoff's delivery to the CRM webhook (`handoffs.crm_status`), apart from the
    handoff's own `HandoffStatus`: pending -> delivering (claimed) -> delivered."""

    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"


class SalesStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply_feedback(self, email: str, decide: Callable[[LeadState], FeedbackOutcome],
                       at: datetime) -> tuple[int, FeedbackOutcome]:
        """Load the lead (locked), let `decide` judge, write the outcome. `decide` raises to
        refuse, and then nothing is written. The lead is locked from the read to the write
        (SQLite's write lock, PostgreSQL's row lock), so the decision is never made on a
        stale lead; a deadlock PostgreSQL broke is retried whole."""
        return retrying(lambda: self._apply_feedback(email, decide, at))

    def _apply_feedback(self, email: str, decide: Callable[[LeadState], FeedbackOutcome],
                        at: datetime) -> tuple[int, FeedbackOutcome]:
        L, H = t.leads, t.handoffs
        with write_tx(self.engine) as conn:
            q = select(L.c.id, L.c.lifecycle_stage, L.c.recycle_count, L.c.version,
                       L.c.email, L.c.score, L.c.grade).where(L.c.email == email)
            if self.engine.dialect.name == "postgresql":
                q = q.with_for_update()
            lead = conn.execute(q).first()
            if lead is None:
                raise LeadNotFound(f"no lead with email {email}")
            # the handoff still waiting for an answer; once accepted it keeps its outcome
            # (a later reject is a transition, so acceptance rates stay true)
            open_handoff = conn.execute(
                select(H.c.id).where(H.c.lead_id == lead.id,
                                     H.c.status == HandoffStatus.PENDING)
                .order_by(H.c.id.desc()).limit(1)).scalar()
            outcome = decide(LeadState(lead.lifecycle_stage, lead.recycle_count,
                                       open_handoff is not None))
            values: dict[str, Any] = {
                "lifecycle_stage": outcome.lifecycle_stage,
                "stage_entered_at": outcome.stage_entered_at,
                "recycle_count": outcome.recycle_count, "updated_at": at,
                # the cycle looks at recycled leads again at once (their wait is in the row)
                "next_check_at": None}
            if outcome.recycle_until is not None:
                values["recycle_until"] = outcome.recycle_until
            if outcome.engagement_since is not None:
                values["engagement_since"] = outcome.engagement_since
            # compare-and-set: the lead must still be the version the decision saw
            res = conn.execute(update(L).where(L.c.id == lead.id,
                                               L.c.version == lead.version)
                               .values(**values, version=L.c.version + 1)
                               .execution_options(preserve_rowcount=True))
            if res.rowcount != 1:  # cannot happen while the lock is held: say so loudly
                raise AssertionError(f"lead {lead.id} changed while locked for feedback")
            tr = outcome.transition
            tid = conn.execute(t.transitions.insert().values(
                lead_id=lead.id, from_stage=tr.from_stage, to_stage=tr.to_stage,
                reason=tr.reason, rule=tr.rule, actor=tr.actor, note=tr.note, at=at,
                amount=outcome.amount)
                .returning(t.transitions.c.id)).scalar_one()
            if outcome.handoff_status and open_handoff is not None:
                conn.execute(update(H).where(H.c.id == open_handoff,
                                             H.c.status == HandoffStatus.PENDING).values(
                    status=outcome.handoff_status, resolved_at=at,
                    outcome_reason=outcome.handoff_reason, note=tr.note))
            # announced with the transition, exactly once (see nurture.store.lead_events)
            for i, kind in enumerate(outcome.events):
                conn.execute(t.lead_events.insert().values(
                    lead_id=lead.id, transition_id=tid if i == 0 else None, kind=kind,
                    created_at=datetime.now(UTC), payload={
                        "email": lead.email, "from": tr.from_stage, "to": tr.to_stage,
                        "reason": tr.reason, "rule": tr.rule, "actor": tr.actor,
                        "note": tr.note, "score": lead.score, "grade": lead.grade,
                        "recycle_count": outcome.recycle_count,
                        "recycle_until": outcome.recycle_until.isoformat()
                        if outcome.recycle_until else None, "as_of": at.isoformat(),
                        "amount": outcome.amount}))
        return lead.id, outcome

    def handoffs(self, status: str | None = None) -> list[dict[str, Any]]:
        H, L = t.handoffs, t.leads
        q = (select(H.c.id, L.c.email, L.c.company, L.c.source, H.c.owner, H.c.status,
                    H.c.rule, H.c.reason, H.c.score, H.c.grade, H.c.created_at,
                    H.c.sla_due_at, H.c.resolved_at, H.c.outcome_reason, H.c.note,
                    L.c.lifecycle_stage, L.c.recycle_count)
             .join(L, L.c.id == H.c.lead_id).order_by(H.c.created_at, H.c.id))
        if status:
            q = q.where(H.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # -- CRM webhook delivery (outbox pattern: a handoff stays pending until delivered) --
    def crm_claim(self, now: datetime, claimer: int, limit: int = 500
                  ) -> list[dict[str, Any]]:
        """Claim due deliveries for `claimer` (compare-and-set pending -> delivering): two
        deliverers at once never POST the same handoff. A claim whose deliverer died is
        offered again after `CRM_CLAIM_LEASE` (the receiver de-duplicates by
        X-Nurture-Delivery)."""
        H, L = t.handoffs, t.leads
        wall = datetime.now(UTC)
        due = or_(H.c.crm_status == CrmDelivery.PENDING,
                  (H.c.crm_status == CrmDelivery.DELIVERING)
                  & (H.c.crm_claimed_at < wall - CRM_CLAIM_LEASE))
        with write_tx(self.engine) as conn:
            ids = conn.execute(
                select(H.c.id).where(due, or_(H.c.crm_next_attempt_at.is_(None),
                                              H.c.crm_next_attempt_at <= now))
                .order_by(H.c.id).limit(limit)).scalars().all()
            if not ids:
                return []
            got = conn.execute(update(H).where(H.c.id.in_(ids), due)
                               .values(crm_status=CrmDelivery.DELIVERING, crm_claimed_by=claimer,
                                       crm_claimed_at=wall)
                               .returning(H.c.id)).scalars().all()
            q = (select(H.c.id, H.c.owner, H.c.status, H.c.rule, H.c.reason, H.c.score,
                        H.c.grade, H.c.created_at, H.c.sla_due_at, H.c.crm_attempts,
                        L.c.id.label("lead_id"), L.c.email, L.c.first_name, L.c.last_name,
                        L.c.company, L.c.title, L.c.source, L.c.recycle_count)
                 .join(L, L.c.id == H.c.lead_id).where(H.c.id.in_(got)).order_by(H.c.id))
            return [dict(r._mapping) for r in conn.execute(q)]

    def crm_delivered(self, handoff_id: int, at: datetime, claimer: int) -> None:
        H = t.handoffs
        with write_tx(self.engine) as conn:
            conn.execute(update(H).where(H.c.id == handoff_id, H.c.crm_claimed_by == claimer,
                                         H.c.crm_status == CrmDelivery.DELIVERING).values(
                crm_status=CrmDelivery.DELIVERED, crm_delivered_at=at, crm_error=None,
                crm_attempts=H.c.crm_attempts + 1))

    def crm_retry_later(self, handoff_id: int, next_at: datetime, error: str,
                        claimer: int) -> None:
        H = t.handoffs
        with write_tx(self.engine) as conn:
            conn.execute(update(H).where(H.c.id == handoff_id, H.c.crm_claimed_by == claimer,
                                         H.c.crm_status == CrmDelivery.DELIVERING).values(
                crm_status=CrmDelivery.PENDING, crm_next_attempt_at=next_at, crm_error=error[:2000],
                crm_attempts=H.c.crm_attempts + 1))
