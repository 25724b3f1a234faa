"""In-memory fakes of the ports in `nurture.services.ports` (cosmicpython's FakeRepository):
plain dicts, with the same compare-and-set rules as the SQL store — a lead write needs the
version it was loaded at and bumps it; a touch write needs its expected status and owning
run — so the cycle's planning and sending, and the ledger's state machine, can be tested
without a database. Not a mock: the services run unchanged against it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from nurture.core.domain import (
    CANCELLED,
    CYCLE_STAGES,
    IN_DOUBT,
    MARKETING_STAGES,
    PLANNED,
    SENDING,
    ActivityFact,
    Decision,
    HandoffStatus,
    LeadEvent,
    LeadSnapshot,
    TouchFact,
)
from nurture.core.ledger import TouchResult, decide_takeover
from nurture.core.routing import assign_owners, next_check
from nurture.services.ports import Applied, OutgoingTouch, RunInfo, Takeover
from nurture.store.rows import LEAD_COLUMNS


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


class FakeStore:
    """The cycle's store (`CycleStore`) in dicts."""

    def __init__(self) -> None:
        self.leads: dict[int, dict[str, Any]] = {}
        self.activities: dict[int, list[tuple[str, datetime]]] = {}
        self.states: dict[int, tuple[str, str, dict[str, int]]] = {}
        self.touches: dict[int, FakeTouch] = {}
        self.handoffs: list[dict[str, Any]] = []
        self.events: list[LeadEvent] = []
        self.suppressed: set[str] = set()
        self.owner_turn = 0
        self.pauses = FakePauses()
        self.ledger = FakeLedger(self)

    # -- setting up --------------------------------------------------------------------------
    def add_lead(self, email: str, created_at: datetime, **fields: Any) -> int:
        lead_id = len(self.leads) + 1
        self.leads[lead_id] = {"email": email, "created_at": created_at, "timezone": "UTC",
                               "lifecycle_stage": "new", "stage_entered_at": created_at,
                               "engagement_since": None, "recycle_count": 0,
                               "recycle_until": None, "next_check_at": None,
                               "activity_pending": False, "version": 0, **fields}
        return lead_id

    def add_activity(self, lead_id: int, kind: str, at: datetime) -> None:
        self.activities.setdefault(lead_id, []).append((kind, at))
        lead = self.leads[lead_id]
        lead.update(next_check_at=None, activity_pending=True, version=lead["version"] + 1)

    def fields(self, lead_id: int) -> dict[str, Any]:
        lead = self.leads[lead_id]
        return {c: lead.get(c) for c in LEAD_COLUMNS} | {
            "created_at": lead["created_at"].isoformat()}

    # -- CycleStore ----------------------------------------------------------------------------
    def _due(self, lead: dict[str, Any], as_of: datetime, engaged_only: bool) -> bool:
        if engaged_only:
            return lead["activity_pending"] and lead["lifecycle_stage"] in MARKETING_STAGES
        return lead["lifecycle_stage"] in CYCLE_STAGES and (
            lead["next_check_at"] is None or lead["next_check_at"] <= as_of)

    def cycle_ranges(self, as_of: datetime, chunk_size: int, engaged_only: bool = False
                     ) -> list[tuple[int, int, int]]:
        ids = [i for i, lead in sorted(self.leads.items())
               if self._due(lead, as_of, engaged_only)]
        parts = [ids[i:i + chunk_size] for i in range(0, len(ids), chunk_size)]
        return [(p[0], p[-1], len(p)) for p in parts]

    def load_snapshots(self, lo: int, hi: int, as_of: datetime, horizon_days: float,
                       points: dict[str, float], default_tz: str, any_stage: bool = False,
                       engaged_only: bool = False, ids: Sequence[int] | None = None
                       ) -> list[LeadSnapshot]:
        since = as_of - timedelta(days=horizon_days)
        out = []
        for i, lead in sorted(self.leads.items()):
            if not lo <= i <= hi or (ids is not None and i not in ids):
                continue
            if not any_stage and not self._due(lead, as_of, engaged_only):
                continue
            campaign, track, rounds = self.states.get(i, (None, None, {}))
            hand = next((h for h in self.handoffs if h["lead_id"] == i
                         and h["status"] == HandoffStatus.PENDING), None)
            out.append(LeadSnapshot(
                id=i, email=lead["email"], fields=self.fields(i),
                timezone=lead["timezone"] or default_tz,
                lifecycle_stage=lead["lifecycle_stage"],
                stage_entered_at=lead["stage_entered_at"],
                engagement_since=lead["engagement_since"],
                recycle_count=lead["recycle_count"], recycle_until=lead["recycle_until"],
                suppressed=lead["email"] in self.suppressed,
                activities=[ActivityFact(k, at, points.get(k, 0.0))
                            for k, at in sorted(self.activities.get(i, []),
                                                key=lambda a: a[1]) if since <= at <= as_of],
                touches=[TouchFact(tc.campaign, tc.step, tc.round, tc.status,
                                   tc.sent_at or (tc.send_at if tc.status in (IN_DOUBT, SENDING)
                                                  else None))
                         for tc in self.touches.values() if tc.lead_id == i],
                campaign=campaign, track=track, track_rounds=dict(rounds),
                handoff_id=hand["id"] if hand else None,
                sla_due_at=hand["sla_due_at"] if hand else None, version=lead["version"]))
        return out

    def apply_decisions(self, decisions: list[Decision], as_of: datetime,
                        owners: Sequence[str], actor: str,
                        events: dict[int, list[LeadEvent | None]] | None = None,
                        touch_only: Sequence[tuple[int, int]] = ()) -> Applied:
        wanted = {d.lead_id: d.version for d in decisions} | dict(touch_only)
        stale = {i for i, v in wanted.items() if self.leads[i]["version"] != v}
        for i, _ in touch_only:
            if i not in stale:
                lead = self.leads[i]
                lead.update(activity_pending=False, version=lead["version"] + 1)
        fresh = [d for d in decisions if d.lead_id not in stale]
        out = Applied(stale=stale)
        mqls = [d.lead_id for d in fresh if d.handoff is not None]
        if mqls:
            out.owners = assign_owners(mqls, owners, self.owner_turn)
            self.owner_turn += len(mqls)
        for d in fresh:
            self._write(d, as_of, out, (events or {}).get(d.lead_id) or [])
        return out

    def _write(self, d: Decision, as_of: datetime, out: Applied,
               events: list[LeadEvent | None]) -> None:
        lead = self.leads[d.lead_id]
        lead.update(lifecycle_stage=d.lifecycle_stage, stage_entered_at=d.stage_entered_at,
                    engagement_since=d.engagement_since, recycle_count=d.recycle_count,
                    recycle_until=d.recycle_until, next_check_at=next_check(d),
                    activity_pending=False, version=lead["version"] + 1)
        if d.campaign is None:
            self.states.pop(d.lead_id, None)
        else:
            self.states[d.lead_id] = (d.campaign, d.track, dict(d.track_rounds))
        if d.expire_handoff:
            for h in self.handoffs:
                if h["lead_id"] == d.lead_id and h["status"] == HandoffStatus.PENDING:
                    h["status"] = HandoffStatus.EXPIRED
        if d.handoff is not None:
            self.handoffs.append({"id": len(self.handoffs) + 1, "lead_id": d.lead_id,
                                  "owner": out.owners[d.lead_id],
                                  "status": HandoffStatus.PENDING,
                                  "sla_due_at": d.handoff.sla_due_at})
            out.mqls += 1
        for ev in events:
            if ev is not None:
                ev = replace(ev, owner=out.owners.get(d.lead_id)) if ev.kind == "mql" else ev
                out.events.append(ev)
                self.events.append(ev)
        if d.touch is not None:
            self._plan(d, out)

    def _plan(self, d: Decision, out: Applied) -> None:
        p = d.touch
        key = (d.lead_id, p.campaign, p.step, p.round)
        same = [tc for tc in self.touches.values()
                if (tc.lead_id, tc.campaign, tc.step, tc.round) == key]
        if same and same[0].status != CANCELLED:
            return  # unique per lead × campaign × step × round: planned once
        if same:
            same[0].status, same[0].send_at, same[0].attempts = PLANNED, p.send_at, 0
        else:
            tid = len(self.touches) + 1
            self.touches[tid] = FakeTouch(tid, d.lead_id, p.campaign, p.track, p.step,
                                          p.round, p.variant, p.send_at)
        out.planned += 1

    def deliverability_rows(self, end: datetime, days: float, since_resume: bool = False
                            ) -> list[dict[str, Any]]:
        return []
