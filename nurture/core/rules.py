"""The whole config compiled for the hot path: predicates, tables and lookups built once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nurture.core.conditions import Compiled, compile_condition
from nurture.core.config import Campaign, Config, RejectAction, Step, Track
from nurture.core.next_check import TimeTriggers
from nurture.core.scoring import HORIZON_HALF_LIVES, ScoreTable


@dataclass(slots=True, frozen=True)
class CompiledStep:
    step: Step
    when: Compiled | None


@dataclass(slots=True, frozen=True)
class CompiledTrack:
    track: Track
    steps: tuple[CompiledStep, ...]


@dataclass(slots=True, frozen=True)
class CompiledCampaign:
    campaign: Campaign
    audience: Compiled
    tracks_by_stage: dict[str, CompiledTrack]
    tracks_by_name: dict[str, CompiledTrack]

    @property
    def name(self) -> str:
        return self.campaign.name


@dataclass(slots=True, frozen=True)
class Rules:
    """Compiled lifecycle + campaigns. Build with `Rules.compile(config)` once per run."""

    config: Config
    scores: ScoreTable
    stages: tuple[tuple[str, Compiled], ...]
    mql: Compiled
    mql_owners: tuple[str, ...]
    sla_hours: int
    recycle: Compiled | None
    sales_rejected: dict[str, RejectAction]
    max_recycles: int
    max_touches_per_week: int
    campaigns: tuple[CompiledCampaign, ...]  # highest priority first
    horizon_days: float
    triggers: TimeTriggers = TimeTriggers()  # what changes with time alone (next_check)

    @classmethod
    def compile(cls, config: Config) -> Rules:
        lc = config.lifecycle
        stages = tuple((s.name, compile_condition(s.when)) for s in lc.buying_stages)
        campaigns = []
        for c in config.campaigns:
            tracks = {}
            for t in c.tracks:
                steps = tuple(CompiledStep(s, compile_condition(s.when) if s.when else None)
                              for s in t.steps)
                tracks[t.name] = CompiledTrack(t, steps)
            campaigns.append(CompiledCampaign(
                c, compile_condition(c.audience.when),
                {ct.track.stage: ct for ct in tracks.values()}, tracks))
        return cls(
            config=config,
            scores=ScoreTable.compile(lc.scoring),
            stages=stages,
            mql=compile_condition(lc.routing.mql.when),
            mql_owners=tuple(lc.routing.mql.owners),
            sla_hours=lc.routing.mql.sla_hours,
            recycle=compile_condition(lc.routing.recycle.when) if lc.routing.recycle else None,
            sales_rejected=dict(lc.routing.sales_rejected),
            max_recycles=lc.routing.max_recycles,
            max_touches_per_week=lc.limits.max_touches_per_week,
            campaigns=tuple(campaigns),
            horizon_days=max([HORIZON_HALF_LIVES * lc.scoring.decay_half_life_days,
                              *_day_windows(config)]),
            triggers=TimeTriggers.from_config(config),
        )

    def campaign(self, name: str | None) -> CompiledCampaign | None:
        for c in self.campaigns:
            if c.name == name:
                return c
        return None

    @property
    def fingerprint(self) -> str:
        """Changes whenever the config does (leads asleep under old rules are woken)."""
        digest = hashlib.sha256(self.config.lifecycle.model_dump_json().encode())
        for c in self.config.campaigns:
            digest.update(c.model_dump_json().encode())
        return digest.hexdigest()[:32]

    def cadence_days(self, campaign: str | None, track: str | None) -> int | None:
        compiled = self.campaign(campaign)
        found = compiled.tracks_by_name.get(track) if compiled and track else None
        return found.track.cadence_days if found else None


def _day_windows(config: Config) -> list[float]:
    """Every `within_days` / `no_engagement_days` in the config: activities that old matter."""
    found: list[float] = []

    def walk(obj: object) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in ("within_days", "no_engagement_days") and isinstance(v, int | float):
                    found.append(float(v))
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(config.lifecycle.model_dump())
    for c in config.campaigns:
        walk(c.model_dump())
    return found
