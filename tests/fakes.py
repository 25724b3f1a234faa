"""In-memory fakes of the ports in `nurture.services.ports` (cosmicpython's FakeRepository):
plain dicts, with the same compare-and-set rules as the SQL store — a lead write needs the
version it was loaded at and bumps it; a touch write needs its expected status and owning
run — so the cycle's planning and sending, and the ledger's state machine, can be tested
without a database. Not a mock: the services run unchanged against it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from fake_ledger import FakeLedger, FakePauses, FakeTouch

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
from nurture.core.routing import assign_owners, next_check
from nurture.services.ports import Applied
from nurture.store.rows import LEAD_COLUMNS


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
        self.rules_fingerprint: str | None = None
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
        ids = {i for i, lead in self.leads.items() if self._due(lead, as_of, engaged_only)}
        if not engaged_only:  # the send phase's work: leads with touches not yet settled
            ids |= {tc.lead_id for tc in self.touches.values()
                    if tc.status in (PLANNED, SENDING, IN_DOUBT)}
        ids = sorted(ids)
        parts = [ids[i:i + chunk_size] for i in range(0, len(ids), chunk_size)]
        return [(p[0], p[-1], len(p)) for p in parts]

    def refresh_statistics(self, tables=()) -> None:
        """Nothing to plan in memory."""

    def wake_for_new_rules(self, fingerprint: str) -> int:
        if self.rules_fingerprint == fingerprint:
            return 0
        self.rules_fingerprint = fingerprint
        woken = [lead for lead in self.leads.values() if lead["next_check_at"] is not None]
        for lead in woken:
            lead.update(next_check_at=None, version=lead["version"] + 1)
        return len(woken)

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
