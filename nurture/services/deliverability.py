"""The deliverability guard: pause a campaign whose spam-report or hard-bounce rate passes
the bulk-sender limits, before it hurts the sending domain.

`guard` runs once per cycle, before planning: it reads the rolling-window rates from the
store, decides with the pure `nurture.services.results.over_limit`, pauses with a
compare-and-set, and hands the pauses to `announce` (in production the Prefect emitter,
`nurture.adapters.prefect_events.announce_pauses`, wired in `nurture.wiring`).
A paused campaign gets nothing planned (`nurture.core.evaluation`) or claimed (the ledger)
until `nurture campaign resume NAME`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from nurture.services.ports import CampaignPauses, DeliverabilityStore
from nurture.services.results import GUARD_DAYS, deliverability_report, over_limit

ACTOR = "system:deliverability-guard"


def guard(store: DeliverabilityStore, as_of: datetime | None = None,
          announce: Callable[[CampaignPauses], int] | None = None) -> list[dict[str, Any]]:
    """Pause every active campaign over a limit; returns the pauses made now. `announce`
    publishes every pause not announced yet (this run's and any a crashed run left)."""
    as_of = as_of or datetime.now(UTC)
    status = store.pauses
    current = {r["campaign"]: r for r in status.list()}
    rows = deliverability_report(store.deliverability_rows(
        as_of + timedelta(seconds=1), GUARD_DAYS, since_resume=True), current)
    made = []
    for item in rows:
        why = over_limit(item)
        if why is None or item["status"] == "paused":
            continue
        n = status.pause(item["campaign"], why, ACTOR, as_of, metrics=item)
        if n is not None:
            made.append({"campaign": item["campaign"], "reason": why, "pause": n})
    if announce is not None:
        announce(status)
    return made
