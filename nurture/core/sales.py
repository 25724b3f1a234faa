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


@dataclass(slots=True, frozen=True)
class _Feedback:
    """One piece of feedback being decided: what every action's rule looks at."""

    state: LeadState
    rules: Rules
    at: datetime
    reason: str | None
    note: str | None
    actor: str

    @property
    def stage(self) -> str:
        return self.state.lifecycle_stage

    def out(self, to: str, why: str, rule: str | None, **kw) -> FeedbackOutcome:
        return FeedbackOutcome(Transition(self.stage, to, why, rule, self.actor, self.note),
                               to, self.at, self.state.recycle_count, **kw)

    def disqualify(self, why: str, rule: str, handoff: HandoffStatus | None = None,
                   code: str | None = None) -> FeedbackOutcome:
        o = self.out(DISQUALIFIED, why, rule, handoff_status=handoff, handoff_reason=code)
        o.events.append(LeadEventKind.DISQUALIFIED)
        return o

    def recycle(self, why: str, rule: str, days: int, handoff: HandoffStatus | None,
                code: str | None) -> FeedbackOutcome:
        """Back to nurture after `days`, or disqualified once out of recycles."""
        count, most = self.state.recycle_count, self.rules.max_recycles
        if count >= most:
            return self.disqualify(f"{why}; recycled {count} times already "
                                   f"(max_recycles {most})", "routing.max_recycles",
                                   handoff, code)
        o = self.out(RECYCLED, f"{why}; back to nurture after {days} days", rule,
                     recycle_until=self.at + timedelta(days=days), engagement_since=self.at,
                     handoff_status=handoff, handoff_reason=code)
        o.recycle_count = count + 1
        o.events.append(LeadEventKind.RECYCLED)
        return o


def _with_sales(f: _Feedback, becomes: str) -> None:
    if f.stage not in WITH_SALES:
        raise FeedbackRefused(f"only a lead with sales ({', '.join(WITH_SALES)}) can "
                              f"{becomes}; this lead is {f.stage}")


def _accept(f: _Feedback) -> FeedbackOutcome:
    if f.stage != MQL:
        raise FeedbackRefused(f"only an MQL can be accepted; this lead is {f.stage}")
    o = f.out(SAL, "accepted by sales", "sales.accept", handoff_status=HandoffStatus.ACCEPTED)
    o.events.append(LeadEventKind.SAL)
    return o


def _reject(f: _Feedback) -> FeedbackOutcome:
    _with_sales(f, "be rejected")
    codes = f.rules.sales_rejected
    if f.reason is None:
        raise FeedbackRefused("a reject needs a reason code, one of "
                              f"{', '.join(sorted(codes))}", "reason")
    rule = f"routing.sales_rejected.{f.reason}"
    handoff = HandoffStatus.REJECTED if f.state.has_open_handoff else None
    if codes[f.reason].disqualify:
        return f.disqualify(f"rejected by sales: {f.reason}", rule, handoff, f.reason)
    return f.recycle(f"rejected by sales: {f.reason}", rule,
                     codes[f.reason].recycle_after_days or 0, handoff, f.reason)


def _opportunity(f: _Feedback) -> FeedbackOutcome:
    _with_sales(f, "become an opportunity")
    o = f.out(OPPORTUNITY, "opportunity opened by sales", "sales.opportunity",
              handoff_status=HandoffStatus.ACCEPTED if f.stage == MQL else None)
    o.events.append(LeadEventKind.OPPORTUNITY)
    return o


def _won(f: _Feedback) -> FeedbackOutcome:
    if f.stage != OPPORTUNITY:
        raise FeedbackRefused(f"only an opportunity can be won; this lead is {f.stage}")
    o = f.out(CUSTOMER, "deal won", "sales.won")
    o.events.append(LeadEventKind.CUSTOMER)
    return o


def _lost(f: _Feedback) -> FeedbackOutcome:
    """Back to nurture after a rest (or as a reject code says)."""
    if f.stage != OPPORTUNITY:
        raise FeedbackRefused(f"only an opportunity can be lost; this lead is {f.stage}")
    reason, codes = f.reason, f.rules.sales_rejected
    if reason is not None and codes[reason].disqualify:
        return f.disqualify(f"deal lost: {reason}", f"routing.sales_rejected.{reason}")
    days = codes[reason].recycle_after_days if reason else LOST_RECYCLE_DAYS
    return f.recycle(f"deal lost{': ' + reason if reason else ''}",
                     f"routing.sales_rejected.{reason}" if reason else "sales.lost",
                     days or 0, None, reason)


_DECIDE = {SalesAction.ACCEPT: _accept, SalesAction.REJECT: _reject,
           SalesAction.OPPORTUNITY: _opportunity, SalesAction.WON: _won,
           SalesAction.LOST: _lost}


def _decide(state: LeadState, action: str, rules: Rules, at: datetime, reason: str | None,
            note: str | None, actor: str) -> FeedbackOutcome:
    if action not in ACTIONS:
        raise FeedbackRefused(f"unknown action {action!r}; one of {', '.join(ACTIONS)}",
                              "action")
    codes = rules.sales_rejected
    if reason is not None and reason not in codes:
        raise FeedbackRefused(f"unknown reason code {reason!r}; lifecycle.yaml defines "
                              f"{', '.join(sorted(codes)) or 'none'} (routing.sales_rejected)",
                              "reason")
    return _DECIDE[SalesAction(action)](_Feedback(state, rules, at, reason, note, actor))
