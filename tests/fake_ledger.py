"""The send ledger, run registry and campaign pauses of `tests/fakes.py`'s `FakeStore`:
every touch write a compare-and-set on (expected status, owning run), as in the SQL ledger."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nurture.core.domain import CANCELLED, IN_DOUBT, MARKETING_STAGES, PLANNED, SENDING
from nurture.core.ledger import TouchResult, decide_takeover
from nurture.services.ports import OutgoingTouch, RunInfo, Takeover

if TYPE_CHECKING:
    from fakes import FakeStore


@dataclass
class FakeTouch:
    id: int
    lead_id: int
    campaign: str
    track: str
    step: str
    round: int
    variant: str | None
    send_at: datetime
    status: str = PLANNED
    attempts: int = 0
    run_id: int | None = None
    retry_at: datetime | None = None
    sent_at: datetime | None = None
    provider_message_id: str | None = None
    error: str | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_event_at: datetime | None = None


class FakeRuns:
    """The run registry. `kill(run_id)` is a kill -9: the run stays `running` but its
    heartbeat stops (and it can no longer finish), so a later run takes it over."""

    def __init__(self) -> None:
        self.runs: dict[int, dict[str, Any]] = {}
        self.killed: set[int] = set()
        self.lock = threading.Lock()

    def register(self, kind: str, as_of: datetime | None = None) -> int:
        with self.lock:
            run_id = len(self.runs) + 1
            self.runs[run_id] = {"kind": kind, "status": "running",
                                 "heartbeat_at": datetime.now(UTC)}
            return run_id

    def beat(self, run_id: int) -> bool:
        with self.lock:
            run = self.runs[run_id]
            if run_id not in self.killed and run["status"] == "running":
                run["heartbeat_at"] = datetime.now(UTC)
            return run["status"] == "running"

    def finish(self, run_id: int, status: str = "finished", detail: str | None = None
               ) -> None:
        with self.lock:
            if run_id not in self.killed and self.runs[run_id]["status"] == "running":
                self.runs[run_id]["status"] = status

    def kill(self, run_id: int, silent_for: timedelta = timedelta(hours=1)) -> None:
        with self.lock:
            self.killed.add(run_id)
            self.runs[run_id]["heartbeat_at"] = datetime.now(UTC) - silent_for

    def take_over(self, run_ids: set[int], lapse: timedelta) -> set[int]:
        now = datetime.now(UTC)
        with self.lock:
            for i in run_ids:
                run = self.runs[i]
                if run["status"] == "running" and run["heartbeat_at"] < now - lapse:
                    run["status"] = "lost"
            return {i for i in run_ids if self.runs[i]["status"] != "running"}

    def info(self, ids: set[int]) -> dict[int, RunInfo]:
        return {i: RunInfo(i, self.runs[i]["kind"], "fake", 0, self.runs[i]["status"],
                           self.runs[i]["heartbeat_at"]) for i in ids}


class FakeLedger:
    """The send ledger over the store's touches; every write a compare-and-set."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.runs = FakeRuns()

    def claim(self, lo: int, hi: int, send_before: datetime, now: datetime, run_id: int,
              limit: int) -> list[OutgoingTouch]:
        s = self.store
        due = [tc for tc in sorted(s.touches.values(), key=lambda x: x.id)
               if lo <= tc.lead_id <= hi and tc.status == PLANNED and tc.send_at <= send_before
               and (tc.retry_at is None or tc.retry_at <= now)
               and tc.campaign not in s.pauses.paused()][:limit]
        out = []
        for tc in due:
            lead = s.leads[tc.lead_id]
            if lead["email"] in s.suppressed or lead["lifecycle_stage"] not in MARKETING_STAGES:
                tc.status, tc.run_id = CANCELLED, None
                continue
            tc.status, tc.run_id, tc.attempts = SENDING, run_id, tc.attempts + 1
            out.append(OutgoingTouch(tc.id, tc.lead_id, lead["email"], s.fields(tc.lead_id),
                                     tc.campaign, tc.track, tc.step, tc.round, tc.variant,
                                     tc.send_at, tc.attempts))
        return out

    def record(self, results: Sequence[TouchResult], run_id: int | None) -> int:
        refused = 0
        for r in results:
            tc = self.store.touches.get(r.touch_id)
            if tc is None or tc.status != SENDING or tc.run_id != run_id:
                refused += 1
                continue
            self._write(tc, r)
        return refused

    def take_over(self, lo: int, hi: int, lapse: timedelta,
                  reconcile: Callable[[list[int]], dict[int, str | None]], transport: str,
                  me: int) -> Takeover:
        rows = [tc for tc in self.store.touches.values()
                if lo <= tc.lead_id <= hi and tc.status == SENDING and tc.run_id != me]
        out = Takeover(owners_alive={})
        owners = {tc.run_id for tc in rows if tc.run_id is not None}
        dead = self.runs.take_over(owners, lapse)
        alive = owners - dead
        if alive:
            out.owners_alive = self.runs.info(alive)
            out.touches_held = sum(1 for tc in rows if tc.run_id in alive)
        orphans = [tc for tc in rows if tc.run_id is None or tc.run_id in dead]
        known = dict(reconcile([tc.id for tc in orphans])) if orphans else {}
        now = datetime.now(UTC)
        for tc in orphans:
            self._write(tc, decide_takeover(tc.id, known, now, transport))
            out.settled += 1
        return out

    def release_in_doubt(self, lo: int, hi: int, quiet_since: datetime) -> int:
        n = 0
        for tc in self.store.touches.values():
            if (lo <= tc.lead_id <= hi and tc.status == IN_DOUBT and tc.last_event_at is None
                    and tc.updated_at < quiet_since):
                tc.status, tc.run_id, tc.retry_at = PLANNED, None, None
                n += 1
        return n

    @staticmethod
    def _write(tc: FakeTouch, r: TouchResult) -> None:
        tc.status = r.status
        tc.sent_at = tc.sent_at or r.sent_at
        tc.provider_message_id = tc.provider_message_id or r.provider_message_id
        tc.error, tc.retry_at = r.error, r.retry_at
        tc.attempts -= 1 if r.give_back_attempt else 0
        tc.run_id = None if r.status == PLANNED else tc.run_id
        tc.updated_at = datetime.now(UTC)


class FakePauses:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def paused(self) -> frozenset[str]:
        return frozenset(c for c, r in self.rows.items() if r["status"] == "paused")

    def list(self) -> list[dict[str, Any]]:
        return [dict(r, campaign=c) for c, r in sorted(self.rows.items())]

    def pause(self, campaign: str, reason: str, by: str, at: datetime | None = None,
              metrics: dict[str, Any] | None = None) -> int | None:
        row = self.rows.setdefault(campaign, {"status": "active", "pauses": 0})
        if row["status"] == "paused":
            return None
        row.update(status="paused", pauses=row["pauses"] + 1, reason=reason)
        return row["pauses"]

    def unannounced(self) -> list[dict[str, Any]]:
        return []

    def announced(self, campaign: str, pauses: int) -> None:
        pass
