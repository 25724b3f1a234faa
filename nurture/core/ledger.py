"""The touch state machine, in one place: what each send outcome does to a touch.

```
planned ──claim──▶ sending (owned by one run, attempt n)
sending ──202────────────────────▶ sent
sending ──retryable (429/5xx/net,─▶ planned again, retry_at = now + backoff(n)
          render error)             … or failed for good after `max_attempts`
sending ──permanent (400, no step)▶ failed
sending ──outcome unknowable──────▶ in_doubt ──provider event──▶ sent
          (read timeout, kill -9)   in_doubt ──no event after the settle window, with the
                                                signed webhook configured──▶ planned again
sending ──credentials refused─────▶ planned (attempt given back: the ledger is as it was)
planned ──lead left marketing / suppressed──▶ cancelled ──planned again later──▶ planned
failed  ──`nurture touches release` (a person's decision)──▶ planned
```

A step counts as *seen* (the lead moves on to the next one) only once it went out or may
have (`sent`, `in_doubt`). Every transition is written by the store as a compare-and-set on
(touch, expected status, owning run), so a run that lost its claim cannot write.

Pure: no I/O. The send phase asks `decide_*` and hands the results to the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from nurture.core.domain import CANCELLED, FAILED, IN_DOUBT, PLANNED, SENDING, SENT, TouchStatus

# Allowed transitions (from -> to); the store's compare-and-set enforces them.
TRANSITIONS: dict[TouchStatus, frozenset[TouchStatus]] = {
    PLANNED: frozenset({SENDING, CANCELLED}),
    SENDING: frozenset({SENT, PLANNED, FAILED, IN_DOUBT}),
    IN_DOUBT: frozenset({SENT, PLANNED, CANCELLED}),
    FAILED: frozenset({PLANNED}),
    CANCELLED: frozenset({PLANNED}),
    SENT: frozenset({CANCELLED}),  # a scheduled send the provider cancelled in time
}
# Statuses that mean "this step went out, or may have": the lead moves on.
SEEN = frozenset({SENT, IN_DOUBT, SENDING})
# Statuses that count against cadence and the weekly cap (from the touch's slot): those
# that went out or may have (a timeout, a crash mid-send), so doubt never turns into an
# extra email.
MAY_HAVE_SENT = SEEN


def allowed(src: TouchStatus | str, dst: TouchStatus | str) -> bool:
    return TouchStatus(dst) in TRANSITIONS.get(TouchStatus(src), frozenset())


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Backoff across runs for retryable failures: base × 2^(attempt-1), capped."""

    max_attempts: int = 5
    base: timedelta = timedelta(minutes=15)
    cap: timedelta = timedelta(hours=24)

    def retry_at(self, attempt: int, now: datetime) -> datetime:
        return now + min(self.cap, self.base * 2 ** max(0, attempt - 1))


@dataclass(slots=True, frozen=True)
class TouchResult:
    """One compare-and-set write: touch `touch_id`, now `sending` under `run_id` at
    `attempt`, becomes `status`."""

    touch_id: int
    status: TouchStatus
    sent_at: datetime | None = None
    provider_message_id: str | None = None
    provider_batch_id: str | None = None
    subject: str | None = None
    transport: str | None = None
    error: str | None = None
    retry_at: datetime | None = None
    give_back_attempt: bool = False  # credentials refused: the attempt did not happen


def decide_sent(touch_id: int, sent_at: datetime, message_id: str | None,
                batch_id: str | None, subject: str, transport: str) -> TouchResult:
    return TouchResult(touch_id, SENT, sent_at=sent_at, provider_message_id=message_id,
                       provider_batch_id=batch_id, subject=subject, transport=transport)


def decide_failure(touch_id: int, attempt: int, error: str, retryable: bool,
                   policy: RetryPolicy, now: datetime, subject: str | None = None,
                   transport: str | None = None) -> TouchResult:
    """A failed attempt: planned again after a backoff while attempts remain, else failed
    for good (reported, and listed by `nurture touches list --status failed`)."""
    if retryable and attempt < policy.max_attempts:
        return TouchResult(touch_id, PLANNED, subject=subject, transport=transport,
                           error=f"attempt {attempt} of {policy.max_attempts} failed: {error}; "
                                 "retried by a later run",
                           retry_at=policy.retry_at(attempt, now))
    if retryable:
        error = f"gave up after {attempt} attempts: {error}"
    return TouchResult(touch_id, FAILED, subject=subject, transport=transport, error=error)


def decide_in_doubt(touch_id: int, error: str, subject: str | None = None,
                    transport: str | None = None, batch_id: str | None = None) -> TouchResult:
    """Kept with its scheduled-send batch id: an unsubscribe can still cancel it."""
    return TouchResult(touch_id, IN_DOUBT, subject=subject, transport=transport, error=error,
                       provider_batch_id=batch_id)


def decide_give_back(touch_id: int) -> TouchResult:
    """Credentials refused before this message was sent: as if never claimed."""
    return TouchResult(touch_id, PLANNED, give_back_attempt=True)


def decide_takeover(touch_id: int, known: dict[int, str | None], now: datetime,
                    transport: str) -> TouchResult:
    """A touch left `sending` by a run that stopped (its heartbeat lapsed). `known` is what
    the transport can tell: message id if it certainly went out, None if it certainly did
    not; absent means it cannot know — then the touch is in doubt, never blindly resent."""
    if touch_id not in known:
        return decide_in_doubt(touch_id, "the run sending it stopped mid-send; the outcome is "
                               "in doubt until the provider's events settle it", None,
                               transport)
    mid = known[touch_id]
    if mid is None:
        return TouchResult(touch_id, PLANNED, error="the run sending it stopped before it "
                           "went out; sent again", give_back_attempt=True)
    return TouchResult(touch_id, SENT, sent_at=now, provider_message_id=mid,
                       transport=transport)

