"""MQL routing decisions that need no database: who owns a new MQL, and when the cycle must
look at a lead again.

The store only reserves a position in the shared round-robin (an atomic counter, so two runs
never hand out the same turn) and writes what these functions decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nurture.core.domain import MQL, Decision, SkipReason


def assign_owners(lead_ids: Sequence[int], owners: Sequence[str], first: int
                  ) -> dict[int, str]:
    """Round-robin: the n-th new MQL (counting from the reserved turn `first`) goes to
    `owners[(first + n) % len(owners)]`, so sales reps get new leads in turn across runs."""
    if not owners:
        raise ValueError("no MQL owners configured: a new MQL needs someone to own it")
    return {lead_id: owners[(first + i) % len(owners)] for i, lead_id in enumerate(lead_ids)}


def next_check(d: Decision) -> datetime | None:
    """When the cycle must look at this lead again: waiting leads are skipped until their
    wait ends (new activity or a lead update clears this, so changes are never missed)."""
    if d.lifecycle_stage == MQL and d.handoff is not None:
        return d.handoff.sla_due_at
    if d.skip_reason == SkipReason.RECYCLE_WAIT:
        return d.recycle_until
    return d.next_check_at
