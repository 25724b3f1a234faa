"""What a provider event (SendGrid Event Webhook) changes for a touch and its lead: pure
decisions, no database.

The adapter (`nurture.adapters.sendgrid_events`) turns raw JSON into `ProviderEvent`s
(`nurture.core.provider_events`); the store loads the state they need (`TouchState`,
`LeadRef`), `decide` says what follows as one frozen `EngagementDecision`, and the store
writes it in one transaction. Why here: which delivery status wins, what is a link scanner's
click and when an in-doubt touch counts as sent are rules of the engine, and they must not
hide inside SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nurture.core.domain import FAILED, IN_DOUBT
from nurture.core.provider_events import (
    KNOWN_EVENTS,
    DeliveryStatus,
    EventKind,
    EventOutcome,
    ProviderEvent,
    clean_text,
)

ACTOR = "sendgrid:event-webhook"

SETTLEABLE = (IN_DOUBT, FAILED)  # a touch we were unsure of, that the provider did have

# a later, stronger delivery state wins over an earlier, weaker one; equal rank: the later
DELIVERY_RANK: dict[str, int] = {
    DeliveryStatus.DEFERRED: 1, DeliveryStatus.BLOCKED: 2, DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.BOUNCED: 4, DeliveryStatus.DROPPED: 4}

FAILING = (DeliveryStatus.BOUNCED, DeliveryStatus.DROPPED, DeliveryStatus.BLOCKED)

SCANNER_CLICK = "email_scanner_click"


@dataclass(slots=True, frozen=True)
class TouchState:
    """What the decision needs of a touch an event is about."""

    id: int
    lead_id: int
    sent_at: datetime | None
    delivered_at: datetime | None


@dataclass(slots=True, frozen=True)
class LeadRef:
    id: int
    email: str


@dataclass(slots=True, frozen=True)
class TouchChange:
    """One touch's change from its events (the store applies it compare-and-set)."""

    touch_id: int
    settle_at: datetime | None = None        # in doubt / failed -> sent, sent_at if unset
    went_out: str | None = None              # event kind proving a cancelled send went out
    message_id: str | None = None
    delivery_status: str | None = None       # the strongest of the events (ties: the later)
    error: str | None = None                 # with a failing delivery status
    delivered_at: datetime | None = None
    last_event_at: datetime | None = None

    @property
    def late_send_note(self) -> str | None:
        """The error text of a cancelled scheduled send that went out after all."""
        return (f"sent after all: SendGrid reported {self.went_out} for this cancelled "
                "scheduled send") if self.went_out else None


@dataclass(slots=True, frozen=True)
class Suppression:
    email: str
    reason: str
    detail: str
    created_at: datetime
    lead_id: int | None          # the lead to audit (a transition) when the row is new
    audit_reason: str
    rule: str
    at: datetime


@dataclass(slots=True, frozen=True)
class ActivityRecord:
    external_id: str
    lead_id: int
    type: str
    occurred_at: datetime
    properties: dict[str, Any]


@dataclass(slots=True, frozen=True)
class EngagementDecision:
    """Everything a set of claimed events changes; written in one transaction."""

    touches: tuple[TouchChange, ...] = ()
    suppressions: tuple[Suppression, ...] = ()
    activities: tuple[ActivityRecord, ...] = ()
    recheck: frozenset[int] = frozenset()    # leads to re-evaluate (version bumped)
    unmatched: int = 0
    scanner_clicks: int = 0


def rank(status: str | None) -> int:
    return DELIVERY_RANK.get(status or "", 0)


def outranks(new: str | None, current: str | None) -> bool:
    """Does a later `new` delivery status replace `current`? Never a downgrade."""
    return new is not None and rank(new) >= rank(current)


def is_scanner_click(clicked_at: datetime, delivered_at: datetime | None,
                     sent_at: datetime | None, seconds: float) -> bool:
    """A click this soon after delivery (else sending) is a link scanner, not the lead."""
    ref = delivered_at or sent_at
    return ref is not None and clicked_at - ref <= timedelta(seconds=seconds)


def can_settle(status: str) -> bool:
    """In doubt / failed touches become sent when an event proves the provider had them."""
    return status in SETTLEABLE


def outcome_for(e: ProviderEvent, matched: bool) -> EventOutcome:
    """How a claimed event is recorded: unmatched (no touch, no lead), applied or ignored."""
    if not matched:
        return EventOutcome.UNMATCHED
    return EventOutcome.APPLIED if e.event in KNOWN_EVENTS else EventOutcome.IGNORED


def activity_id(provider: str, event_id: str) -> str:
    """Unique like the event id itself: a long id is digested, never cut (cut ids collide)."""
    ext = f"{provider}:{event_id}"
    if len(ext) <= 200:
        return ext
    return f"{provider}:sha1:" + hashlib.sha1(event_id.encode()).hexdigest()


def _failure_text(e: ProviderEvent) -> str | None:
    if e.delivery_status in FAILING:
        return clean_text(f"{e.delivery_status}: {e.detail or ''}".strip())
    return None


def fold_touch(touch_id: int, events: Iterable[ProviderEvent]) -> TouchChange:
    """One touch's change from its events, taken in time order."""
    settle = went_out = mid = ds = err = da = le = None
    for e in sorted(events, key=lambda e: e.occurred_at):
        if e.settles_sent and settle is None:
            settle = e.occurred_at
        if e.went_out and went_out is None:
            went_out = e.event
        mid = mid or e.message_id
        if e.delivery_status and outranks(e.delivery_status, ds):
            ds, err = e.delivery_status, _failure_text(e)
        if e.event == EventKind.DELIVERED and da is None:
            da = e.occurred_at
        if le is None or e.occurred_at > le:
            le = e.occurred_at
    return TouchChange(touch_id, settle, went_out, mid, ds, err, da, le)


def _suppression(e: ProviderEvent, lead: LeadRef | None, now: datetime) -> Suppression:
    reason = e.suppress or ""
    return Suppression(
        e.email, reason, e.detail or e.event, now, lead.id if lead else None, clean_text(
            f"email suppressed ({reason}): SendGrid reported {e.event}"
        + (f" — {e.detail}" if e.detail else "") + "; no more marketing email"),
        f"suppression.{reason}", e.occurred_at)


def _activity(e: ProviderEvent, lead: LeadRef, touches: Mapping[int, TouchState],
              delivered_now: Mapping[int, datetime], scanner_seconds: float,
              provider: str) -> ActivityRecord:
    """The activity an event records; a click soon after delivery is a scanner's."""
    kind, props = e.activity or "", dict(e.properties)
    if e.touch_id is not None:
        props["touch_id"] = e.touch_id
        row = touches[e.touch_id]
        if e.is_click and is_scanner_click(e.occurred_at, delivered_now.get(e.touch_id)
                                           or row.delivered_at, row.sent_at, scanner_seconds):
            kind = SCANNER_CLICK
    return ActivityRecord(activity_id(provider, e.event_id), lead.id, kind, e.occurred_at,
                          props)


def _by_touch(events: Sequence[ProviderEvent]) -> tuple[dict[int, list[ProviderEvent]],
                                                        dict[int, datetime]]:
    """Events grouped by touch, and each touch's first delivery among them."""
    by_touch: dict[int, list[ProviderEvent]] = {}
    delivered: dict[int, datetime] = {}
    for e in events:
        if e.touch_id is not None:
            by_touch.setdefault(e.touch_id, []).append(e)
            if e.event == EventKind.DELIVERED:
                delivered.setdefault(e.touch_id, e.occurred_at)
    return by_touch, delivered


def decide(events: Sequence[ProviderEvent], touches: Mapping[int, TouchState],
           lead_for: Callable[[ProviderEvent], LeadRef | None], scanner_seconds: float,
           now: datetime, provider: str = "sendgrid") -> EngagementDecision:
    """What claimed events change: touch delivery state (by precedence), settling, late
    sends, suppressions (first event per address), activities (a click soon after delivery
    is a scanner's) and which leads to re-evaluate."""
    fresh = sorted(events, key=lambda e: e.occurred_at)
    by_touch, delivered_now = _by_touch(fresh)
    suppressions: dict[str, Suppression] = {}
    activities: list[ActivityRecord] = []
    recheck: set[int] = set()
    unmatched = 0
    for e in fresh:
        lead = lead_for(e)
        if lead is None and e.touch_id is None:
            unmatched += 1
        if e.suppress and e.email not in suppressions:
            suppressions[e.email] = _suppression(e, lead, now)
        if lead is not None and e.activity:
            activities.append(_activity(e, lead, touches, delivered_now, scanner_seconds,
                                        provider))
        if lead is not None and (e.activity or e.suppress):
            recheck.add(lead.id)
    return EngagementDecision(
        tuple(fold_touch(tid, evs) for tid, evs in by_touch.items()),
        tuple(suppressions.values()), tuple(activities), frozenset(recheck), unmatched,
        sum(a.type == SCANNER_CLICK for a in activities))

