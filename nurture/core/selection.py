"""Content selection: which campaign, which track, which step and which A/B variant."""

from __future__ import annotations

import hashlib

from nurture.core.conditions import Facts
from nurture.core.domain import RECYCLED, TouchFact
from nurture.core.ledger import SEEN
from nurture.core.rules import CompiledCampaign, CompiledStep, CompiledTrack


def choose_campaign(campaigns: tuple[CompiledCampaign, ...], lifecycle_stage: str,
                    facts: Facts) -> CompiledCampaign | None:
    """The highest-priority campaign whose audience matches (campaigns come sorted)."""
    for c in campaigns:
        if lifecycle_stage in c.campaign.audience.lifecycle_stages and c.audience.test(facts):
            return c
    return None


def choose_track(campaign: CompiledCampaign, lifecycle_stage: str, buying_stage: str
                 ) -> CompiledTrack | None:
    """Recycled leads get the `recycled` track when the campaign has one."""
    if lifecycle_stage == RECYCLED and RECYCLED in campaign.tracks_by_stage:
        return campaign.tracks_by_stage[RECYCLED]
    return campaign.tracks_by_stage.get(buying_stage)


def seen_steps(touches: list[TouchFact], campaign: str) -> set[tuple[str, int]]:
    """(step, round) pairs of this campaign that went out or may have (`nurture.core.ledger.SEEN`).
    A step that failed or was cancelled was never seen: the lead still gets it."""
    return {(t.step, t.round) for t in touches if t.campaign == campaign and t.status in SEEN}


def next_step(track: CompiledTrack, seen: set[tuple[str, int]], round_: int, facts: Facts
              ) -> tuple[CompiledStep | None, int]:
    """First step of the track not yet in the ledger whose `when` holds.

    Returns (step, round). On exhaustion `restart` opens the next round once every step of
    the track the lead qualifies for has been sent (steps already in the ledger for a later
    round are not repeated); `hold` returns (None, round).
    """
    for cs in track.steps:
        if (cs.step.id, round_) not in seen and (cs.when is None or cs.when.test(facts)):
            return cs, round_
    if track.track.on_exhausted == "restart":
        while any((cs.step.id, round_) in seen for cs in track.steps):
            round_ += 1
            for cs in track.steps:
                if (cs.step.id, round_) not in seen and (cs.when is None or cs.when.test(facts)):
                    return cs, round_
    return None, round_


def pick_variant(step: CompiledStep, email: str, campaign: str) -> str | None:
    """Deterministic A/B split: the same lead always lands in the same variant."""
    variants = step.step.variants
    if not variants:
        return None
    digest = hashlib.blake2b(f"{campaign}/{step.step.id}/{email}".encode(),
                             digest_size=8).digest()
    return variants[int.from_bytes(digest, "big") % len(variants)].id
