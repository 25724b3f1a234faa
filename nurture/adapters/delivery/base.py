"""The transport interface the send phase talks to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nurture.core.messages import Message


class TransportAuthError(Exception):
    """Credentials were refused: stop the send phase, leave unsent touches planned.

    `deliveries` lists messages of the failing batch that did go out (or may have), so the
    ledger records them instead of returning them to `planned` and sending them again."""

    def __init__(self, message: str, deliveries: list[Delivery] | None = None) -> None:
        super().__init__(message)
        self.deliveries = list(deliveries or [])


@dataclass(slots=True, frozen=True)
class Delivery:
    """The outcome of handing one message to the transport."""

    touch_id: int
    ok: bool
    message_id: str | None = None
    error: str | None = None
    unknown: bool = False  # outcome cannot be known (timeout after send): reconcile, never resend
    retryable: bool = False  # failed for a passing reason (429/5xx/network): retry later
    batch_id: str | None = None  # SendGrid batch of a scheduled send: cancellable until send_at


class Transport(Protocol):
    name: str
    # messages handed over per call: the send phase records each batch's outcomes before
    # claiming the next, so a crash leaves at most one batch in doubt
    batch_size: int

    def send_many(self, messages: list[Message]) -> list[Delivery]:
        """Send messages; one `Delivery` per message in the same order. May raise
        `TransportAuthError` before sending anything."""

    def reconcile(self, touch_ids: list[int]) -> dict[int, str | None]:
        """For touches whose send outcome was lost: touch id -> message id when the transport
        knows it went out, None when it knows it did not. Missing ids: unknown."""

    def close(self) -> None: ...
