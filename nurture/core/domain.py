"""Plain data the engine works on: snapshots in, decisions out. No I/O, no frameworks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class LifecycleStage(StrEnum):
    """Who owns the lead. Declared in funnel order (reports list stages in this order)."""

    NEW = "new"
    NURTURING = "nurturing"
    MQL = "mql"
    SAL = "sal"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    RECYCLED = "recycled"
    DISQUALIFIED = "disqualified"


NEW, NURTURING, MQL, SAL, SQL, OPPORTUNITY, CUSTOMER, RECYCLED, DISQUALIFIED = LifecycleStage
LIFECYCLE_STAGES = tuple(LifecycleStage)
MARKETING_STAGES = (NEW, NURTURING, RECYCLED)
SALES_STAGES = (SAL, SQL, OPPORTUNITY, CUSTOMER)
# Stages the daily cycle evaluates; sales-owned and disqualified leads are left alone.
CYCLE_STAGES = (NEW, NURTURING, MQL, RECYCLED)


class Grade(StrEnum):
    """Fit grade, best first; D is below every floor in lifecycle.yaml's `scoring.grades`."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"


GRADES = tuple(Grade)


class SalesAction(StrEnum):
    """What sales can say about a lead it was handed (`nurture.core.sales`)."""

    ACCEPT = "accept"
    REJECT = "reject"
    OPPORTUNITY = "opportunity"
    WON = "won"
    LOST = "lost"


class LeadEventKind(StrEnum):
    """Announced lead events (Prefect event `nurture.lead.<kind>`, the `lead_events` table)."""

    MQL = "mql"
    SAL = "sal"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    RECYCLED = "recycled"
    DISQUALIFIED = "disqualified"
    SLA_EXPIRED = "sla_expired"

class SkipReason(StrEnum):
    """Why the cycle planned no touch for a lead, as it appears in run summaries."""

    DISQUALIFIED = "disqualified"
    WITH_SALES = "with_sales"
    MQL = "became_mql"
    RECYCLE_WAIT = "recycle_wait"
    NO_CAMPAIGN = "no_campaign"
    NO_TRACK = "no_track"
    SUPPRESSED = "suppressed"
    PENDING = "touch_pending"
    CADENCE = "cadence"
    WEEKLY_CAP = "weekly_cap"
    EXHAUSTED = "exhausted"
    STEP_FAILED = "step_failed"  # its next step failed for good: held for a person
    PAUSED = "campaign_paused"  # the deliverability guard (or a person) paused the campaign


class TouchStatus(StrEnum):
    """The touch state machine; the transitions live in `nurture.core.ledger`."""

    PLANNED = "planned"      # in the ledger, waiting for its slot (or for `retry_at`)
    SENDING = "sending"      # claimed by one run (`run_id`), in the transport's hands
    SENT = "sent"            # the transport accepted it
    FAILED = "failed"        # permanently failed (400, step gone, attempts exhausted)
    IN_DOUBT = "in_doubt"    # may or may not have gone out: settled by provider events
    CANCELLED = "cancelled"  # never sent: the lead left marketing or was suppressed


class HandoffStatus(StrEnum):
    """An MQL handoff to sales: pending until sales answers or the SLA expires it."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"


PLANNED, SENDING, SENT, FAILED, IN_DOUBT, CANCELLED = (
    TouchStatus.PLANNED, TouchStatus.SENDING, TouchStatus.SENT, TouchStatus.FAILED,
    TouchStatus.IN_DOUBT, TouchStatus.CANCELLED)

# Standard lead fields (lead CSV columns); anything else is a custom attribute.
LEAD_FIELDS = ("email", "first_name", "last_name", "company", "title", "industry",
               "company_size", "country", "timezone", "source", "utm_source", "utm_medium",
               "utm_campaign", "created_at")

SYSTEM_ACTOR = "system:daily-cycle"

# Announced events (nurture.lead.*, nurture.campaign.paused) get ids uuid5(EVENT_NAMESPACE,
# "<what>-<row id>"): re-emitting one after a crash is the same event, which Prefect drops.
EVENT_NAMESPACE = UUID("6f1d3a52-8c2e-4b8f-9a51-2f0d5d1c7e10")

# Activity types the activity API and `nurture validate` know without a declaration (besides
# those lifecycle.yaml scores or lists under `activity_types`).
STANDARD_ACTIVITY_TYPES = frozenset({
    "page_view", "content_download", "form_submit", "webinar_registered",
    "webinar_attended", "pricing_page_view", "demo_request", "trial_signup",
    "email_open", "email_click", "event_attended", "chat_started"})


def normalise_email(email: str) -> str:
    """Leads are identified by trimmed, lower-cased email. A look-up key only: it does not
    validate (`nurture.core.emails.normalize_email` does, for addresses coming in)."""
    return email.strip().lower()


@dataclass(slots=True, frozen=True)
class ActivityFact:
    """One activity as the engine sees it: type, time, raw points from the scoring table."""

    type: str
    occurred_at: datetime
    points: float


@dataclass(slots=True, frozen=True)
class TouchFact:
    """One ledger row as the engine sees it."""

    campaign: str
    step: str
    round: int
    status: str
    sent_at: datetime | None


@dataclass(slots=True)
class LeadSnapshot:
    """Everything the cycle needs to decide about one lead, loaded in bulk per chunk."""

    id: int
    email: str
    fields: dict[str, Any]
    timezone: str
    lifecycle_stage: str
    stage_entered_at: datetime
    engagement_since: datetime | None = None
    recycle_count: int = 0
    recycle_until: datetime | None = None
    suppressed: bool = False
    activities: list[ActivityFact] = field(default_factory=list)
    touches: list[TouchFact] = field(default_factory=list)
    campaign: str | None = None
    track: str | None = None
    track_rounds: dict[str, int] = field(default_factory=dict)
    sla_due_at: datetime | None = None
    handoff_id: int | None = None
    version: int = 0  # the row version it was loaded at (writes compare-and-set on it)
    next_activity_at: datetime | None = None  # first activity after as_of (loaded ahead)


@dataclass(slots=True, frozen=True)
class Transition:
    from_stage: str
    to_stage: str
    reason: str
    rule: str | None = None
    actor: str = SYSTEM_ACTOR
    note: str | None = None


@dataclass(slots=True, frozen=True)
class MqlHandoff:
    """A handoff to create; the owner is assigned round-robin by the chunk service."""

    rule: str
    reason: str
    sla_due_at: datetime


@dataclass(slots=True, frozen=True)
class PlannedTouch:
    campaign: str
    track: str
    step: str
    round: int
    variant: str | None
    send_at: datetime


@dataclass(slots=True)
class Decision:
    """What one cycle decided for one lead; applied to the store in bulk."""

    lead_id: int
    fit_score: float
    engagement_score: float
    score: float
    grade: str
    buying_stage: str
    lifecycle_stage: str
    stage_entered_at: datetime
    engagement_since: datetime | None
    recycle_count: int
    recycle_until: datetime | None
    campaign: str | None
    track: str | None
    track_rounds: dict[str, int]
    transitions: list[Transition] = field(default_factory=list)
    handoff: MqlHandoff | None = None
    expire_handoff: bool = False
    touch: PlannedTouch | None = None
    skip_reason: SkipReason | None = None
    version: int = 0  # of the snapshot it was made from: a stale decision is not written
    next_check_at: datetime | None = None  # when the cycle looks again (core.next_check)

    @property
    def mql(self) -> bool:
        return self.handoff is not None

    @property
    def recycled(self) -> bool:
        return any(t.to_stage == RECYCLED for t in self.transitions)


@dataclass
class LeadEvent:
    """An MQL, recycle, SLA expiry... to announce (Prefect event, automations). Recorded in
    the `lead_events` table with the transition that caused it, then emitted once."""

    kind: str  # a `LeadEventKind`
    lead_id: int
    email: str
    campaign: str | None
    reason: str
    rule: str | None
    score: float | None = None
    grade: str | None = None
    owner: str | None = None
    breakdown: dict[str, Any] | None = None
    recycle_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self, as_of: datetime) -> dict[str, Any]:
        return {"email": self.email, "score": self.score, "grade": self.grade,
                "reason": self.reason, "rule": self.rule, "campaign": self.campaign,
                "owner": self.owner, "score_breakdown": self.breakdown,
                "recycle_count": self.recycle_count, "as_of": as_of.isoformat()} | self.extra


class LeadNotFound(LookupError):
    """No lead with that email address (every door answers it the same way: 404, exit 1)."""
