"""Provider-event orchestration shared by the app, the CLI and the flows: parse (the adapter,
a port), decide (`nurture.core.engagement`) and apply (the store, a port) each webhook batch;
retry what could not be applied; stop scheduled sends to addresses that were suppressed
before they went out.

SendGrid holds a message with `send_at` (up to 72 h ahead) under the batch id our transport
created for it; cancelling that batch (`POST /v3/user/scheduled_sends`, status `cancel`) is
the only way to stop it. A cancellation that fails is simply tried again by the next call:
the touches to cancel are derived from the ledger (sent, `send_at` still ahead, a batch id,
address suppressed), so nothing has to remember a failed attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from nurture.core.provider_events import (
    MAX_ATTEMPTS,
    ApplyReport,
    EventOutcome,
    Parsed,
    PendingReport,
    ProviderEvent,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine



class EventParser(Protocol):
    """Raw provider events -> `Parsed` (never raises per event); a stored body -> events
    (ValueError when it can never be read)."""

    def parse_events(self, raw_events: Sequence[Any]) -> list[Parsed]: ...

    def parse_stored(self, body: str) -> list[Any]: ...


class EventStorePort(Protocol):
    """What orchestration needs of the provider-event store (`nurture.store.events`)."""

    engine: Engine

    def store_batch(self, body: str, signed: bool, n_events: int) -> int: ...
    def mark_failed(self, batch_id: int, error: str) -> None: ...
    def unapplied_batches(self, max_attempts: int = ...) -> list[tuple[int, str]]: ...
    def count_batch_attempt(self, batch_id: int) -> None: ...
    def give_up_batch(self, batch_id: int, max_attempts: int, why: str) -> None: ...
    def batch_body(self, batch_id: int) -> str | None: ...
    def apply_parsed(self, batch_id: int, parsed: list[Parsed],
                     scanner_seconds: float = ...) -> ApplyReport: ...
    def ingest(self, body: str, signed: bool, parsed: list[Parsed],
               scanner_seconds: float = ...) -> tuple[int, ApplyReport | None]: ...
    def unapplied_events(self, max_attempts: int, limit: int) -> list[Any]: ...
    def apply_event(self, row_id: int, effect: ProviderEvent, scanner_seconds: float,
                    expected: Sequence[str]) -> ApplyReport | None: ...
    def fail_event(self, row_id: int, expected: Sequence[str], why: str,
                   give_up: int | None = None) -> None: ...
    def settle_from_events(self) -> int: ...
    def given_up(self, max_attempts: int) -> int: ...
    def failures(self, max_attempts: int = ..., limit: int = ...) -> dict[str, Any]: ...
    def unsubscribe(self, email: str, via: str, touch_id: int | None = None,
                    campaign: str | None = None) -> bool: ...
    def scheduled_to_cancel(self, now: datetime | None = None,
                            emails: Sequence[str] | None = None) -> list[tuple[int, str]]: ...
    def cancel_scheduled(self, cancel: Callable[[str], None],
                         emails: Sequence[str] | None = None,
                         now: datetime | None = None) -> tuple[int, list[str]]: ...


class WebhookEvents:
    """Provider events end to end: the store and the parser are ports (composed by
    `nurture.wiring.webhook_events`); what an event changes is decided in core."""

    def __init__(self, store: EventStorePort, parser: EventParser) -> None:
        self.store = store
        self.parser = parser

    @property
    def engine(self) -> Engine:
        return self.store.engine

    # -- the store's own operations, for the doors that hold one object ----------------------
    def store_batch(self, body: str, signed: bool, n_events: int) -> int:
        return self.store.store_batch(body, signed, n_events)

    def mark_failed(self, batch_id: int, error: str) -> None:
        self.store.mark_failed(batch_id, error)

    def failures(self, max_attempts: int = MAX_ATTEMPTS, limit: int = 100) -> dict[str, Any]:
        return self.store.failures(max_attempts, limit)

    def unsubscribe(self, email: str, via: str, touch_id: int | None = None,
                    campaign: str | None = None) -> bool:
        return self.store.unsubscribe(email, via, touch_id, campaign)

    def scheduled_to_cancel(self, now: datetime | None = None,
                            emails: Sequence[str] | None = None) -> list[tuple[int, str]]:
        return self.store.scheduled_to_cancel(now, emails)

    def cancel_scheduled(self, cancel: Callable[[str], None],
                         emails: Sequence[str] | None = None,
                         now: datetime | None = None) -> tuple[int, list[str]]:
        return self.store.cancel_scheduled(cancel, emails, now)

    # -- applying ----------------------------------------------------------------------------
    def ingest(self, body: str, signed: bool, raw_events: Sequence[Any],
               scanner_seconds: float = 10.0) -> tuple[int, ApplyReport | None]:
        """A webhook batch as it arrives: each event parsed on its own, then the raw batch
        stored and applied in one transaction (the store's `ingest`: raises only when
        nothing was stored; report None when stored but not applied — retried later)."""
        return self.store.ingest(body, signed, self.parser.parse_events(raw_events),
                                 scanner_seconds)

    def apply_batch(self, batch_id: int, raw_events: Sequence[Any],
                    scanner_seconds: float = 10.0) -> ApplyReport:
        """Apply a stored batch: each event parsed on its own (a bad one is kept as `error`
        with its reason), then applied by the store (bulk, else event by event)."""
        return self.store.apply_parsed(batch_id, self.parser.parse_events(raw_events),
                                       scanner_seconds)

    def apply_pending(self, scanner_seconds: float = 10.0, max_attempts: int = MAX_ATTEMPTS,
                      cancel: Callable[[str], None] | None = None,
                      limit: int = 10_000) -> PendingReport:
        """Apply what earlier attempts could not: stored batches never applied (a crash, a
        database outage) and events left `pending` or `error`, each up to `max_attempts`
        times, then left listed (`webhooks replay --json`). With `cancel`, also retry
        cancelling scheduled sends to suppressed addresses. Safe to run concurrently."""
        rep = PendingReport()
        taken = self._retry_batches(rep, scanner_seconds, max_attempts, limit)
        self._retry_events(rep, taken, scanner_seconds, max_attempts, limit)
        rep.settled = self.store.settle_from_events()
        rep.given_up = self.store.given_up(max_attempts)
        if cancel is not None:
            rep.cancelled, errors = self.store.cancel_scheduled(cancel)
            rep.cancel_failed = len(errors)
            rep.errors += errors
        return rep

    def _retry_batches(self, rep: PendingReport, scanner_seconds: float, max_attempts: int,
                       limit: int) -> set[int]:
        """Stored batches never applied; returns their ids (their errors wait a run)."""
        taken: set[int] = set()
        for batch_id, body in self.store.unapplied_batches(max_attempts)[:limit]:
            rep.batches += 1
            taken.add(batch_id)
            self.store.count_batch_attempt(batch_id)  # counted before trying
            try:
                raw = self.parser.parse_stored(body)
            except ValueError as exc:  # never applicable: give up now
                self.store.give_up_batch(batch_id, max_attempts, f"unreadable body: {exc}")
                rep.errors.append(f"batch {batch_id}: {exc}")
                continue
            try:
                applied = self.apply_batch(batch_id, raw, scanner_seconds)
            except Exception as exc:  # noqa: BLE001 - counted by mark_failed; next run
                self.store.mark_failed(batch_id, repr(exc))
                rep.errors.append(f"batch {batch_id}: {exc!r}")
                continue
            rep.events_applied += applied.new - applied.errors
            rep.events_failed += applied.errors
        return taken

    def _retry_events(self, rep: PendingReport, taken: set[int], scanner_seconds: float,
                      max_attempts: int, limit: int) -> None:
        """Single events still pending or in error (their raw event is in their batch)."""
        bodies: dict[int, list[Any] | None] = {}
        for row in self.store.unapplied_events(max_attempts, limit):
            if row.batch_id in taken:
                continue
            expected = (EventOutcome(row.outcome),)
            raw = self._raw_event(row, bodies)
            if raw is None:
                self.store.fail_event(row.id, expected, "the raw event is no longer stored",
                                      give_up=max_attempts)
                rep.events_failed += 1
                continue
            parsed = self.parser.parse_events([raw])[0]
            one = None
            if parsed.effect is None:
                self.store.fail_event(row.id, expected, parsed.error or "invalid event")
            else:
                one = self.store.apply_event(row.id, parsed.effect, scanner_seconds, expected)
            if one is None:
                rep.events_failed += 1
            else:
                rep.events_applied += 1

    def _raw_event(self, row: Any, bodies: dict[int, list[Any] | None]) -> Any:
        """The event a row was recorded from: element `payload.i` of its stored batch."""
        if row.batch_id is None:
            return None
        if row.batch_id not in bodies:
            body = self.store.batch_body(row.batch_id)
            try:
                bodies[row.batch_id] = (self.parser.parse_stored(body)
                                        if body is not None else None)
            except ValueError:
                bodies[row.batch_id] = None
        events = bodies[row.batch_id]
        i = (row.payload or {}).get("i") if isinstance(row.payload, dict) else None
        if events is not None and isinstance(i, int) and 0 <= i < len(events):
            return events[i]
        return None


class Canceller(Protocol):
    """Cancels one scheduled batch at the provider (raises CancelFailed); closed after use."""

    def __call__(self, batch_id: str) -> None: ...
    def close(self) -> None: ...


def cancel_scheduled_sends(events: WebhookEvents, make_canceller: Callable[[], Canceller | None],
                           emails: list[str] | None = None,
                           now: datetime | None = None) -> dict[str, Any]:
    """Cancel scheduled sends to suppressed addresses (all, or only `emails`)."""
    if not events.scheduled_to_cancel(now, emails):
        return {"cancelled": 0, "errors": []}
    canceller = make_canceller()
    if canceller is None:
        return {"cancelled": 0, "errors": ["scheduled sends to suppressed addresses wait "
                                           "for cancellation, but no SendGrid key is set"]}
    try:
        done, errors = events.cancel_scheduled(canceller, emails, now)
    finally:
        canceller.close()
    return {"cancelled": done, "errors": errors}


def retry_provider_events(events: WebhookEvents, make_canceller: Callable[[], Canceller | None],
                          scanner_seconds: float, max_attempts: int | None = None
                          ) -> dict[str, Any]:
    """What the daily cycle and instant routing call before their work: apply stored webhook
    batches and events that earlier attempts could not apply (attempts counted; left listed
    after the limit), then retry cancelling scheduled sends to suppressed addresses."""
    report = events.apply_pending(scanner_seconds, max_attempts or MAX_ATTEMPTS)
    out = report.as_dict()
    cancel = cancel_scheduled_sends(events, make_canceller)
    out["cancelled"], out["cancel_failed"] = cancel["cancelled"], len(cancel["errors"])
    out["errors"] = out["errors"] + cancel["errors"]
    return out
