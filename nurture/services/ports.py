"""What the services need from the outside world, as Protocols (ports).

The services (`planning`, `sending`, `cycle`, `runs`) are typed against these and import no
store or adapter module; `nurture.wiring` hands them the SQL store (`nurture.store`) and a
transport (`nurture.adapters.delivery`), and the unit tests hand them `tests/fakes.py`.
The data crossing a port is plain domain data from `nurture.core` (snapshots, decisions,
`TouchResult`s, messages) or the small records declared here — never database rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from nurture.core.domain import Decision, LeadEvent, LeadSnapshot
from nurture.core.ledger import TouchResult
from nurture.core.messages import Message
from nurture.core.reporting import Window


# -- records crossing the ports ------------------------------------------------------------
@dataclass(slots=True)
class Applied:
    """What `apply_decisions` wrote, and which leads changed under it (decide again)."""

    stale: set[int] = field(default_factory=set)
    planned: int = 0
    mqls: int = 0
    owners: dict[int, str] = field(default_factory=dict)
    events: list[LeadEvent] = field(default_factory=list)


@dataclass(slots=True)
class OutgoingTouch:
    """A claimed touch with what rendering needs."""

    touch_id: int
    lead_id: int
    email: str
    fields: dict[str, Any]
    campaign: str
    track: str
    step: str
    round: int
    variant: str | None
    send_at: datetime
    attempt: int = 1


@dataclass(slots=True, frozen=True)
class RunInfo:
    """A registered run, as the operator is told about it."""

    id: int
    kind: str
    host: str
    pid: int
    status: str
    heartbeat_at: datetime

    def describe(self, now: datetime) -> str:
        ago = (now - self.heartbeat_at).total_seconds()
        return (f"run {self.id} ({self.kind}, pid {self.pid} on {self.host}, heartbeat "
                f"{ago:.0f} s ago)")


@dataclass(slots=True)
class Takeover:
    """What `take_over` settled, and which live runs still hold touches of the range."""

    settled: int = 0
    owners_alive: dict[int, RunInfo] | None = None  # run id -> run, still holding touches
    touches_held: int = 0


# -- delivery --------------------------------------------------------------------------------
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


class TransportAuthError(Exception):
    """Credentials were refused: stop the send phase, leave unsent touches planned.

    `deliveries` lists messages of the failing batch that did go out (or may have), so the
    ledger records them instead of returning them to `planned` and sending them again."""

    def __init__(self, message: str, deliveries: list[Delivery] | None = None) -> None:
        super().__init__(message)
        self.deliveries = list(deliveries or [])


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


# -- runs ------------------------------------------------------------------------------------
class RunStatus(StrEnum):
    """A registered run: running until it finishes or fails, or `lost` once a newer run
    took over its work after its heartbeat stopped."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    LOST = "lost"


class RunRegistry(Protocol):
    """Who is working and whether they still are (heartbeats); fencing by status."""

    def register(self, kind: str, as_of: datetime | None = None) -> int: ...
    def beat(self, run_id: int) -> bool: ...
    def finish(self, run_id: int, status: str = RunStatus.FINISHED, detail: str | None = None
               ) -> None: ...


# -- the send ledger -------------------------------------------------------------------------
class SendLedger(Protocol):
    """The touch state machine's writes, each a compare-and-set (see `nurture.core.ledger`)."""

    runs: RunRegistry

    def claim(self, lo: int, hi: int, send_before: datetime, now: datetime, run_id: int,
              limit: int) -> list[OutgoingTouch]: ...

    def record(self, results: Sequence[TouchResult], run_id: int | None) -> int:
        """Write outcomes of touches `run_id` holds; returns how many were refused."""

    def take_over(self, lo: int, hi: int, lapse: timedelta,
                  reconcile: Callable[[list[int]], dict[int, str | None]], transport: str,
                  me: int) -> Takeover: ...

    def release_in_doubt(self, lo: int, hi: int, quiet_since: datetime) -> int: ...


# -- campaign pauses (the deliverability guard) ---------------------------------------------
class CampaignPauses(Protocol):
    """Campaign status rows; pausing is a compare-and-set (one pause per breach)."""

    def paused(self) -> frozenset[str]: ...
    def list(self) -> list[dict[str, Any]]: ...

    def pause(self, campaign: str, reason: str, by: str, at: datetime | None = None,
              metrics: dict[str, Any] | None = None) -> int | None: ...

    def unannounced(self) -> list[dict[str, Any]]: ...
    def announced(self, campaign: str, pauses: int) -> None: ...


class DeliverabilityStore(Protocol):
    """What the guard reads (rolling-window rates per campaign) and writes (pauses)."""

    @property
    def pauses(self) -> CampaignPauses: ...

    def deliverability_rows(self, end: datetime, days: float, since_resume: bool = False
                            ) -> list[dict[str, Any]]: ...


# -- the cycle's store -----------------------------------------------------------------------
class CycleStore(Protocol):
    """What planning and sending need: due leads, their snapshots, writing decisions
    (compare-and-set on the lead's version), the send ledger, and what the deliverability
    guard reads and writes before planning (paused campaigns get nothing planned)."""

    @property
    def ledger(self) -> SendLedger: ...

    def cycle_ranges(self, as_of: datetime, chunk_size: int, engaged_only: bool = False
                     ) -> list[tuple[int, int, int]]: ...

    def wake_for_new_rules(self, fingerprint: str) -> int:
        """Leads sleeping until their next check are looked at again under new rules."""
        ...

    def refresh_statistics(self) -> None:
        """After the bulk writes of a cycle: let the database plan from today's tables."""
        ...

    def load_snapshots(self, lo: int, hi: int, as_of: datetime, horizon_days: float,
                       points: dict[str, float], default_tz: str, any_stage: bool = False,
                       engaged_only: bool = False, ids: Sequence[int] | None = None
                       ) -> list[LeadSnapshot]: ...

    def apply_decisions(self, decisions: list[Decision], as_of: datetime,
                        owners: Sequence[str], actor: str,
                        events: dict[int, list[LeadEvent | None]] | None = None,
                        touch_only: Sequence[tuple[int, int]] = ()) -> Applied: ...

    @property
    def pauses(self) -> CampaignPauses: ...

    def deliverability_rows(self, end: datetime, days: float, since_resume: bool = False
                            ) -> list[dict[str, Any]]: ...


class SalesFeedbackStore(Protocol):
    """Sales feedback on one lead (accept, reject, won, ...): the lead is locked from the
    read to the write, `decide` (pure, `nurture.core.sales`) judges, the outcome is written;
    returns the lead id and the outcome. Implemented by `nurture.store.sales.SalesStore`."""

    def apply_feedback(self, email: str, decide: Callable[[Any], Any], at: datetime
                       ) -> tuple[int, Any]: ...


class LeadViewStore(Protocol):
    """What `nurture lead show` reads: one lead's detail and its snapshot now."""

    def lead_detail(self, email: str) -> dict[str, Any] | None: ...

    def snapshot(self, lead_id: int, as_of: datetime, horizon_days: float,
                 points: dict[str, float], default_tz: str) -> LeadSnapshot | None: ...


class ResultsQueries(Protocol):
    """The aggregates behind the results reports (`nurture.services.results.build`); the SQL
    store computes them (`nurture.store.results_queries.SqlResultsQueries`)."""

    def step_rows(self, w: Window, credit_days: float) -> list[dict[str, Any]]: ...
    def source_rows(self, w: Window, by: str, touch: str
                    ) -> dict[str, list[dict[str, Any]]]: ...
    def attribution_rows(self, w: Window, lookback_days: float, half_life_days: float
                         ) -> dict[str, list[dict[str, Any]]]: ...
    def deliverability_rows(self, end: datetime, days: float, campaign: str | None
                            ) -> list[dict[str, Any]]: ...
    def campaign_statuses(self) -> list[dict[str, Any]]: ...


# -- imports ---------------------------------------------------------------------------------
class FieldLimits(Protocol):
    """What the store's columns can hold. The importers check every value against it before
    writing, so a value the database would refuse is one row's reason rather than an aborted
    batch; the store derives it from its table definitions (`nurture.store.field_limits`),
    so the checks cannot drift from the schema."""

    @property
    def earliest(self) -> datetime: ...

    def text_problem(self, table: str, column: str, value: Any, what: str | None = None
                     ) -> str | None:
        """Why `value` cannot be stored as `table.column` text (None: it can, or the table
        has no such column)."""

    def int_max(self, table: str, column: str) -> int: ...
    def time_problem(self, value: datetime, what: str, now: datetime | None = None
                     ) -> str | None: ...
    def json_problem(self, value: Any, what: str) -> str | None: ...
    def type_name(self, value: Any) -> str: ...


class ImportStore(Protocol):
    """Where imported leads and activities are written (batches; refused rows reported to
    `on_error` one by one), and the limits their values are checked against first."""

    @property
    def limits(self) -> FieldLimits: ...

    def upsert_leads(self, rows: list[dict[str, Any]],
                     on_error: Callable[[dict[str, Any], Exception], None] | None = None
                     ) -> tuple[int, int]: ...
    def insert_activities(self, rows: list[dict[str, Any]], source: str = "import",
                          on_error: Callable[[dict[str, Any], Exception], None] | None = None
                          ) -> dict[str, int]: ...

    def refresh_statistics(self, tables: Sequence[str]) -> None:
        """After a bulk load: let the database plan from the loaded tables."""
        ...
