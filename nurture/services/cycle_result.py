"""What a chunk of the cycle did, per campaign, and the run summary built from it.

Shared by planning, sending and the chunk loop; merged across chunks (and across Prefect
tasks, which return it), so it is plain data.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nurture.core.domain import LeadEvent

NO_CAMPAIGN = "(no campaign)"


@dataclass
class CampaignStats:
    """One campaign's counts in a chunk (or a whole run, once merged)."""

    scored: int = 0
    by_stage: Counter = field(default_factory=Counter)
    due: int = 0
    sent: int = 0
    failed: int = 0
    skipped: Counter = field(default_factory=Counter)
    mqls: int = 0
    recycled: int = 0
    retrying: int = 0
    in_doubt: int = 0

    def add(self, other: CampaignStats) -> None:
        self.scored += other.scored
        self.by_stage.update(other.by_stage)
        self.due += other.due
        self.sent += other.sent
        self.failed += other.failed
        self.skipped.update(other.skipped)
        self.mqls += other.mqls
        self.recycled += other.recycled
        self.retrying += other.retrying
        self.in_doubt += other.in_doubt

    def as_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "by_buying_stage": dict(sorted(self.by_stage.items())),
                "due": self.due, "sent": self.sent, "failed": self.failed,
                "skipped": dict(sorted(self.skipped.items())), "mqls": self.mqls,
                "recycled": self.recycled, "retrying": self.retrying,
                "in_doubt": self.in_doubt}


@dataclass
class ChunkResult:
    """What one chunk did: counts per campaign, lead events, timings, ledger counts."""

    campaigns: dict[str, CampaignStats] = field(default_factory=lambda: defaultdict(CampaignStats))
    events: list[LeadEvent] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    ledger: Counter = field(default_factory=Counter)  # retrying, in_doubt, taken_over, ...
    held: dict[int, Any] = field(default_factory=dict)  # live runs holding our touches

    def merge(self, other: ChunkResult) -> None:
        for name, stats in other.campaigns.items():
            self.campaigns[name].add(stats)
        self.events.extend(other.events)
        for k, v in other.seconds.items():
            self.seconds[k] += v
        self.ledger.update(other.ledger)
        self.held.update(other.held)


def summarise(result: ChunkResult, as_of: datetime, dry_run: bool) -> dict[str, Any]:
    """The run summary as one JSON-ready object (the `cycle --json` output)."""
    campaigns = {name: stats.as_dict() for name, stats in sorted(result.campaigns.items())}
    skipped: Counter = Counter()
    for stats in result.campaigns.values():
        skipped.update(stats.skipped)
    total = CampaignStats()
    for stats in result.campaigns.values():
        total.add(stats)
    return {
        "as_of": as_of.isoformat(),
        "dry_run": dry_run,
        "leads_scored": total.scored,
        "touches_planned": total.due,
        "touches_sent": total.sent,
        "touches_failed": total.failed,
        "mqls": total.mqls,
        "recycled": total.recycled,
        "skipped": dict(sorted(skipped.items())),
        "by_buying_stage": dict(sorted(total.by_stage.items())),
        "touches_retrying": total.retrying,
        "touches_in_doubt": total.in_doubt,
        "ledger": dict(sorted(result.ledger.items())),
        "campaigns": campaigns,
        "seconds": {k: round(v, 3) for k, v in sorted(result.seconds.items())},
    }
