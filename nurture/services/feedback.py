"""Sales feedback as a use case: the door (CLI, HTTP, flow) parses, `nurture.core.sales`
decides, the store writes — one call for every door, so they cannot drift apart."""

from __future__ import annotations

from datetime import datetime

from nurture.core.domain import normalise_email
from nurture.core.rules import Rules
from nurture.core.sales import decide_feedback
from nurture.services.ports import SalesFeedbackStore


def record_feedback(store: SalesFeedbackStore, rules: Rules, email: str, action: str,
                    at: datetime,
                    reason: str | None = None, note: str | None = None,
                    actor: str = "sales", amount: float | None = None) -> dict:
    """The one service every door calls: decide and write, atomically. `store` is the lead
    store's sales side (`nurture.store.sales.SalesStore` in production). Raises
    `FeedbackRefused` (nothing changed) or `LeadNotFound` for an unknown email."""
    email = normalise_email(email)
    lead_id, o = store.apply_feedback(
        email, lambda state: decide_feedback(state, action, rules, at, reason, note, actor,
                                      amount),
        at)
    tr = o.transition
    return {"email": email, "lead_id": lead_id, "action": action, "from": tr.from_stage,
            "to": tr.to_stage, "reason": tr.reason, "rule": tr.rule, "actor": tr.actor,
            "note": tr.note, "at": at.isoformat(), "recycle_count": o.recycle_count,
            "recycle_until": o.recycle_until.isoformat() if o.recycle_until else None,
            "handoff": o.handoff_status, "events": o.events, "amount": o.amount}
