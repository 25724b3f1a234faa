"""The vocabulary of provider events (SendGrid Event Webhook), shared by the adapter that
parses them, the decisions in `nurture.core.engagement`, the store and the services: event
kinds and what each means, delivery statuses, row outcomes, the parsed event, the reports.
Plain data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

MAX_EMAIL, MAX_TEXT = 320, 2000  # what the lead store's columns hold
MAX_ATTEMPTS = 5                 # applications of one event/batch before it is left listed


class CancelFailed(Exception):
    """The provider did not confirm a scheduled-send cancellation (retried later)."""


class EventKind(StrEnum):
    """The SendGrid event types the engine acts on (others are kept, `ignored`)."""

    PROCESSED = "processed"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCE = "bounce"
    DROPPED = "dropped"
    OPEN = "open"
    CLICK = "click"
    SPAMREPORT = "spamreport"
    UNSUBSCRIBE = "unsubscribe"
    GROUP_UNSUBSCRIBE = "group_unsubscribe"
    GROUP_RESUBSCRIBE = "group_resubscribe"


KNOWN_EVENTS = frozenset(EventKind)


class DeliveryStatus(StrEnum):
    """A touch's delivery state as the provider reports it (`touches.delivery_status`)."""

    DEFERRED = "deferred"
    BLOCKED = "blocked"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    DROPPED = "dropped"


class EventOutcome(StrEnum):
    """`provider_events.outcome`: an event is applied only by the writer that moves it out
    of `pending`/`error` (compare-and-set)."""

    PENDING = "pending"
    APPLIED = "applied"
    UNMATCHED = "unmatched"
    IGNORED = "ignored"
    ERROR = "error"


@dataclass(slots=True, frozen=True)
class Meaning:
    """What an event kind says about the message and the person."""

    settles_sent: bool = False               # the message certainly reached the provider
    went_out: bool = False                   # it certainly left the provider (not just accepted)
    delivery_status: str | None = None       # a DeliveryStatus
    suppress: str | None = None              # suppression reason
    activity: str | None = None              # activity type to record
    is_click: bool = False


_SETTLES = Meaning(True)

MEANINGS: dict[str, Meaning] = {
    EventKind.PROCESSED: _SETTLES,
    EventKind.DELIVERED: Meaning(True, True, DeliveryStatus.DELIVERED),
    EventKind.DEFERRED: Meaning(True, True, DeliveryStatus.DEFERRED),
    EventKind.BOUNCE: Meaning(True, True, DeliveryStatus.BOUNCED, suppress="bounce"),
    EventKind.DROPPED: Meaning(True, False, DeliveryStatus.DROPPED),  # suppress: by reason
    EventKind.OPEN: Meaning(True, True, activity="email_open"),
    EventKind.CLICK: Meaning(True, True, activity="email_click", is_click=True),
    EventKind.SPAMREPORT: Meaning(True, True, suppress="spamreport", activity="spam_report"),
    EventKind.UNSUBSCRIBE: Meaning(True, True, suppress="unsubscribe", activity="unsubscribe"),
    EventKind.GROUP_UNSUBSCRIBE: Meaning(True, True, suppress="unsubscribe",
                                         activity="unsubscribe"),
    EventKind.GROUP_RESUBSCRIBE: _SETTLES,   # recorded; suppressions are lifted by hand
}

# a temporary block is not a bad address; Apple MPP and friends pre-fetch pixels, so a
# machine open says nothing about the lead
BLOCKED_BOUNCE = Meaning(True, True, DeliveryStatus.BLOCKED)

MACHINE_OPEN = Meaning(True, True, activity="email_machine_open")


def meaning_of(kind: str, blocked: bool = False, machine_open: bool = False,
               suppress: str | None = None) -> Meaning:
    """An event kind's meaning; `blocked` bounces and machine opens are their own kind of
    event, and a drop suppresses only for the reasons the provider itself suppresses."""
    if kind == EventKind.BOUNCE and blocked:
        return BLOCKED_BOUNCE
    if kind == EventKind.OPEN and machine_open:
        return MACHINE_OPEN
    m = MEANINGS.get(kind, Meaning())
    if kind == EventKind.DROPPED:
        m = Meaning(m.settles_sent, m.went_out, m.delivery_status, suppress)
    return m


@dataclass(slots=True)
class ProviderEvent:
    """One parsed provider event and what it says (filled by the adapter's parser)."""

    event_id: str
    event: str
    email: str
    occurred_at: datetime
    touch_id: int | None
    message_id: str | None
    delivery_status: str | None = None      # a DeliveryStatus
    settles_sent: bool = False               # the message certainly reached the provider
    went_out: bool = False                   # it certainly left the provider (not just accepted)
    suppress: str | None = None              # suppression reason
    activity: str | None = None              # activity type to record
    is_click: bool = False                   # a click: scanner check needs delivery time
    detail: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Parsed:
    """One raw event of a batch, parsed: a `ProviderEvent` or the reason it is bad."""

    index: int
    key: str
    effect: ProviderEvent | None
    error: str | None
    raw_kind: str = "?"
    raw_email: str = ""


def clean_text(value: str, limit: int = MAX_TEXT) -> str:
    """A string any database column takes: no NUL, no lone surrogates, at most `limit`."""
    if value.isascii() and "\x00" not in value:  # the common case, without re-encoding
        return value[:limit]
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")[:limit]


@dataclass
class ApplyReport:
    """What applying a batch did (the webhook's answer, `nurture webhooks replay`)."""

    events: int = 0
    new: int = 0
    duplicates: int = 0
    unmatched: int = 0
    errors: int = 0
    settled: int = 0
    suppressed: int = 0
    activities: int = 0
    scanner_clicks: int = 0
    suppressed_emails: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "suppressed_emails"}

    def merge(self, other: ApplyReport) -> None:
        for k, v in other.__dict__.items():
            if k == "suppressed_emails":
                self.suppressed_emails += v
            elif k != "events":
                setattr(self, k, getattr(self, k) + v)


@dataclass
class PendingReport:
    """What `apply_pending` did."""

    batches: int = 0            # unapplied batches taken up
    events_applied: int = 0     # pending/error events applied now
    events_failed: int = 0      # ... that failed again (attempts counted)
    given_up: int = 0           # events and batches left listed after MAX_ATTEMPTS
    settled: int = 0            # in-doubt/failed touches an earlier event proved sent
    cancelled: int = 0          # scheduled sends cancelled at the provider
    cancel_failed: int = 0      # cancellations that failed (retried next time)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

