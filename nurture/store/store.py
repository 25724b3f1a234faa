"""The lead store as one object: a thin facade over the use-case modules, so the wiring hands
the services one thing that satisfies their ports (`nurture.services.ports.CycleStore`,
`LeadViewStore`) and callers keep one import.

Each method delegates to one module: `leads` (due ranges, snapshots), `decisions` (writing a
chunk's decisions, compare-and-set on leads.version), `imports`, `suppression`, `kv`
(secret, counters), `lead_detail`, `ledger` (the send ledger and run registry), `pauses`.
Every method returns domain objects or plain values, never database rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Engine

from nurture.core.domain import Decision, LeadEvent, LeadSnapshot
from nurture.services.ports import Applied
from nurture.store import decisions as decision_writes
from nurture.store import imports, kv, lead_detail, leads, statistics, suppression, wakeups
from nurture.store.field_limits import TableLimits
from nurture.store.imports import RowRefused
from nurture.store.ledger import Ledger
from nurture.store.pauses import CampaignStatus
from nurture.store.results_queries import deliverability_rows
from nurture.store.rows import LEAD_COLUMNS, lead_fields


class LeadStore:
    """SQL implementation of the store the engine services use (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @cached_property
    def ledger(self) -> Ledger:
        """The send ledger (claims, results, take-overs) and its run registry."""
        return Ledger(self.engine)

    # -- shared state ---------------------------------------------------------------------
    def get_or_create_secret(self, key: str = "secret_key") -> str:
        return kv.get_or_create_secret(self.engine, key)

    # -- the cycle --------------------------------------------------------------------------
    def cycle_ranges(self, as_of: datetime, chunk_size: int, engaged_only: bool = False
                     ) -> list[tuple[int, int, int]]:
        return leads.cycle_ranges(self.engine, as_of, chunk_size, engaged_only)

    def wake_for_new_rules(self, fingerprint: str) -> int:
        return wakeups.wake_for_new_rules(self.engine, fingerprint)

    def refresh_statistics(self, tables: Sequence[str] = statistics.CYCLE_TABLES) -> None:
        statistics.refresh_statistics(self.engine, tables)

    def load_snapshots(self, lo: int, hi: int, as_of: datetime, horizon_days: float,
                       points: dict[str, float], default_tz: str,
                       any_stage: bool = False, engaged_only: bool = False,
                       ids: Sequence[int] | None = None) -> list[LeadSnapshot]:
        return leads.load_snapshots(self.engine, lo, hi, as_of, horizon_days, points,
                                    default_tz, any_stage, engaged_only, ids)

    def snapshot(self, lead_id: int, as_of: datetime, horizon_days: float,
                 points: dict[str, float], default_tz: str) -> LeadSnapshot | None:
        """One lead's snapshot regardless of whether the cycle would look at it today."""
        snaps = self.load_snapshots(lead_id, lead_id, as_of, horizon_days, points, default_tz,
                                    any_stage=True)
        return snaps[0] if snaps else None

    def apply_decisions(self, decisions: list[Decision], as_of: datetime,
                        owners: Sequence[str], actor: str,
                        events: dict[int, list[LeadEvent | None]] | None = None,
                        touch_only: Sequence[tuple[int, int]] = ()) -> Applied:
        return decision_writes.apply_decisions(self.engine, decisions, as_of, owners, actor,
                                         events, touch_only)

    @cached_property
    def pauses(self) -> CampaignStatus:
        """Campaign pauses (the deliverability guard's; nothing is planned for a paused
        campaign until it is resumed)."""
        return CampaignStatus(self.engine)

    def deliverability_rows(self, end: datetime, days: float, since_resume: bool = False
                            ) -> list[dict[str, Any]]:
        """Per campaign over the rolling window [end - days, end): the guard's rates."""
        return deliverability_rows(self.engine, end, days, since_resume=since_resume)

    def stage_counts(self) -> dict[str, int]:
        return leads.stage_counts(self.engine)

    # -- imports and suppression --------------------------------------------------------------
    @cached_property
    def limits(self) -> TableLimits:
        """What the columns hold, for the importers' checks (`FieldLimits`)."""
        return TableLimits()

    def upsert_leads(self, rows: list[dict[str, Any]],
                     on_error: RowRefused | None = None) -> tuple[int, int]:
        return imports.upsert_leads(self.engine, rows, on_error)

    def insert_activities(self, rows: list[dict[str, Any]], source: str = "import",
                          on_error: RowRefused | None = None) -> dict[str, int]:
        return imports.insert_activities(self.engine, rows, source, on_error)

    def suppress(self, email: str, reason: str, source: str | None = None,
                 detail: str | None = None) -> bool:
        return suppression.suppress(self.engine, email, reason, source, detail)

    # -- one lead, for people -------------------------------------------------------------------
    def lead_detail(self, email: str) -> dict[str, Any] | None:
        return lead_detail.lead_detail(self.engine, email)


__all__ = ["LEAD_COLUMNS", "Applied", "LeadStore", "lead_fields"]
