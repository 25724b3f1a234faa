"""Fit score and grade (who the lead is) and engagement score (what it did, decaying)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nurture.core.conditions import Compiled, Facts, compile_condition
from nurture.core.config import Scoring
from nurture.core.domain import ActivityFact, Grade

# Activities older than this many half-lives weigh under 0.1 % and are not loaded at all,
# so a cycle's work does not grow with a lead's whole history.
HORIZON_HALF_LIVES = 10


@dataclass(slots=True, frozen=True)
class FitRule:
    condition: Compiled
    points: float


@dataclass(slots=True, frozen=True)
class ScoreTable:
    """Scoring section of lifecycle.yaml, compiled once per cycle."""

    fit_rules: tuple[FitRule, ...]
    grade_floors: tuple[tuple[str, float], ...]  # (grade, minimum fit), best first
    points: dict[str, tuple[float, int | None]]  # activity type -> (points, max_per_day)
    half_life_days: float

    @classmethod
    def compile(cls, scoring: Scoring) -> ScoreTable:
        rules = tuple(FitRule(compile_condition(r), r.points) for r in scoring.fit)
        floors = tuple(sorted(scoring.grades.items(), key=lambda kv: -kv[1]))
        points = {k: (v.points, v.max_per_day) for k, v in scoring.engagement.items()}
        return cls(rules, floors, points, scoring.decay_half_life_days)

    def raw_points(self, activity_type: str) -> float:
        entry = self.points.get(activity_type)
        return entry[0] if entry else 0.0

    # -- fit ----------------------------------------------------------------------------
    def fit(self, facts: Facts) -> float:
        return sum(r.points for r in self.fit_rules if r.condition.test(facts))

    def fit_breakdown(self, facts: Facts) -> list[tuple[str, float]]:
        return [(r.condition.description, r.points) for r in self.fit_rules
                if r.condition.test(facts)]

    def breakdown(self, facts: Facts, places: int = 2) -> dict[str, Any]:
        """Why the score is what it is: the fit rules that held (rule, points) and engagement
        points per activity type, largest first. One computation for `nurture lead explain`
        and the MQL event sales sees."""
        by_type = self.engagement_by_type(facts.activities, facts.as_of)
        return {"fit": [{"rule": d, "points": p} for d, p in self.fit_breakdown(facts)],
                "engagement": {k: round(v, places) for k, v in sorted(
                    by_type.items(), key=lambda kv: -abs(kv[1]))}}

    def grade(self, fit: float) -> Grade:
        for grade, floor in self.grade_floors:
            if fit >= floor:
                return Grade(grade)
        return Grade.D

    # -- engagement ---------------------------------------------------------------------
    def engagement_by_type(self, activities: list[ActivityFact], as_of: datetime
                           ) -> dict[str, float]:
        """Points per activity type after per-day caps and half-life decay to `as_of`."""
        out: dict[str, float] = defaultdict(float)
        per_day: dict[tuple[str, object], int] = defaultdict(int)
        half_life_s = self.half_life_days * 86400.0
        for a in activities:
            entry = self.points.get(a.type)
            if not entry or entry[0] == 0:
                continue
            points, cap = entry
            if cap is not None:
                key = (a.type, a.occurred_at.date())
                per_day[key] += 1
                if per_day[key] > cap:
                    continue
            age = (as_of - a.occurred_at).total_seconds()
            out[a.type] += points * 0.5 ** (max(age, 0.0) / half_life_s)
        return dict(out)

    def engagement(self, activities: list[ActivityFact], as_of: datetime) -> float:
        return round(sum(self.engagement_by_type(activities, as_of).values()), 2)
