"""Sales feedback: what sales says about a lead it was handed, and what follows.

One pure decision function shared by every door (CLI, `POST /sales/feedback`, the
`sales_feedback` Prefect flow): the door parses, this decides, the store writes. Reasons
come from `routing.sales_rejected` in lifecycle.yaml — the codes sales and marketing agreed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nurture.core.domain import (
    CUSTOMER,
    DISQUALIFIED,
    MQL,
    OPPORTUNITY,
    RECYCLED,
    SAL,
    SQL,
    HandoffStatus,
    LeadEventKind,
    SalesAction,
    Transition,
    normalise_email,
)
from nurture.core.rules import Rules

ACTIONS = tuple(SalesAction)
AMOUNT_ACTIONS = (SalesAction.OPPORTUNITY, SalesAction.WON)
# a lost deal rests this long before nurture resumes, unless a reject code says otherwise
LOST_RECYCLE_DAYS = 90
WITH_SALES = (MQL, SAL, SQL)


class FeedbackRefused(ValueError):
    """The feedback does not apply (unknown code, lead not with sales...): nothing changes.

    `param` names the input at fault (`action`, `reason`) when there is one; the message is
    door-neutral, and each door names the input its own way (`--reason`, the JSON field, the
    flow parameter) with `door_message`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def door_message(self, name: str = "{}") -> str:
        """The message prefixed with the door's name for `param`: `name` is a format string
        such as `--{}` (CLI) or `parameter '{}'` (the Prefect flow)."""
        return f"{name.format(self.param)}: {self}" if self.param else str(self)


@dataclass(slots=True)
class LeadState:
    lifecycle_stage: str
    recycle_count: int
    has_open_handoff: bool


@dataclass(slots=True)
class FeedbackOutcome:
    """What to write: the lead's new stage fields, the transition, the handoff outcome."""

    transition: Transition
    lifecycle_stage: str
    stage_entered_at: datetime
    recycle_count: int
    recycle_until: datetime | None = None
    engagement_since: datetime | None = None
    handoff_status: HandoffStatus | None = None  # accepted | rejected (the open handoff)
    handoff_reason: str | None = None
    events: list[LeadEventKind] = field(default_factory=list)  # Prefect event kinds to emit
    amount: float | None = None              # deal value (opportunity / won), on the transition


def decide_feedback(state: LeadState, action: str, rules: Rules, at: datetime,
                    reason: str | None = None, note: str | None = None,
                    actor: str = "sales", amount: float | None = None) -> FeedbackOutcome:
    """Decide one piece of sales feedback; raises `FeedbackRefused` with the reason.
    `amount` (deal value) is only taken with `opportunity` and `won`."""
    o = _decide(state, action, rules, at, reason, note, actor)
    if amount is not None:
        if action not in AMOUNT_ACTIONS:
            raise FeedbackRefused(f"--amount goes with {' or '.join(AMOUNT_ACTIONS)}, "
                                  f"not {action}")
        if not isinstance(amount, int | float) or isinstance(amount, bool) \
                or not math.isfinite(amount) or amount < 0:
            raise FeedbackRefused(f"amount must be a number >= 0, got {amount!r}")
        o.amount = float(amount)
    return o


def _decide(state: LeadState, action: str, rules: Rules, at: datetime, reason: str | None,
            note: str | None, actor: str) -> FeedbackOutcome:
    stage = state.lifecycle_stage
    if action not in ACTIONS:
        raise FeedbackRefused(f"unknown action {action!r}; one of {', '.join(ACTIONS)}",
                              "action")
    codes = rules.sales_rejected
    if reason is not None and reason not in codes:
        raise FeedbackRefused(f"unknown reason code {reason!r}; lifecycle.yaml defines "
                              f"{', '.join(sorted(codes)) or 'none'} (routing.sales_rejected)",
                              "reason")

    def out(to: str, why: str, rule: str | None, **kw) -> FeedbackOutcome:
        return FeedbackOutcome(Transition(stage, to, why, rule, actor, note), to, at,
                               state.recycle_count, **kw)

    def recycle(why: str, rule: str, days: int, handoff: HandoffStatus | None, code: str | None
                ) -> FeedbackOutcome:
        if state.recycle_count >= rules.max_recycles:
            o = out(DISQUALIFIED, f"{why}; recycled {state.recycle_count} times already "
                    f"(max_recycles {rules.max_recycles})", "routing.max_recycles",
                    handoff_status=handoff, handoff_reason=code)
            o.events.append(LeadEventKind.DISQUALIFIED)
            return o
        o = out(RECYCLED, f"{why}; back to nurture after {days} days", rule,
                recycle_until=at + timedelta(days=days), engagement_since=at,
                handoff_status=handoff, handoff_reason=code)
        o.recycle_count = state.recycle_count + 1
        o.events.append(LeadEventKind.RECYCLED)
        return o

    if action == SalesAction.ACCEPT:
        if stage != MQL:
            raise FeedbackRefused(f"only an MQL can be accepted; this lead is {stage}")
        o = out(SAL, "accepted by sales", "sales.accept", handoff_status=HandoffStatus.ACCEPTED)
        o.events.append(LeadEventKind.SAL)
        return o
    if action == SalesAction.REJECT:
        if stage not in WITH_SALES:
            raise FeedbackRefused(f"only a lead with sales ({', '.join(WITH_SALES)}) can be "
                                  f"rejected; this lead is {stage}")
        if reason is None:
            raise FeedbackRefused("a reject needs a reason code, one of "
                                  f"{', '.join(sorted(codes))}", "reason")
        rule = f"routing.sales_rejected.{reason}"
        handoff = HandoffStatus.REJECTED if state.has_open_handoff else None
        if codes[reason].disqualify:
            o = out(DISQUALIFIED, f"rejected by sales: {reason}", rule,
                    handoff_status=handoff, handoff_reason=reason)
            o.events.append(LeadEventKind.DISQUALIFIED)
            return o
        return recycle(f"rejected by sales: {reason}", rule,
                       codes[reason].recycle_after_days or 0, handoff, reason)
    if action == SalesAction.OPPORTUNITY:
        if stage not in WITH_SALES:
            raise FeedbackRefused(f"only a lead with sales ({', '.join(WITH_SALES)}) can "
                                  f"become an opportunity; this lead is {stage}")
        o = out(OPPORTUNITY, "opportunity opened by sales", "sales.opportunity",
                handoff_status=HandoffStatus.ACCEPTED if stage == MQL else None)
        o.events.append(LeadEventKind.OPPORTUNITY)
        return o
    if stage != OPPORTUNITY:
        raise FeedbackRefused(f"only an opportunity can be {action}; this lead is {stage}")
    if action == SalesAction.WON:
        o = out(CUSTOMER, "deal won", "sales.won")
        o.events.append(LeadEventKind.CUSTOMER)
        return o
    # lost: back to nurture after a rest (or as a reject code says)
    if reason is not None and codes[reason].disqualify:
        o = out(DISQUALIFIED, f"deal lost: {reason}", f"routing.sales_rejected.{reason}")
        o.events.append(LeadEventKind.DISQUALIFIED)
        return o
    days = codes[reason].recycle_after_days if reason else LOST_RECYCLE_DAYS
    return recycle(f"deal lost{': ' + reason if reason else ''}",
                   f"routing.sales_rejected.{reason}" if reason else "sales.lost",
                   days or 0, None, reason)


def record_feedback(store, rules: Rules, email: str, action: str, at: datetime,
                    reason: str | None = None, note: str | None = None,
                    actor: str = "sales", amount: float | None = None) -> dict:
    """The one service every door calls: decide and write, atomically. `store` is the lead
    store's sales side (`nurture.store.sales.SalesStore`). Raises `FeedbackRefused` (nothing
    changed) or `LookupError` for an unknown email."""
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
