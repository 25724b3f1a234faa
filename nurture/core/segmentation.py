"""Buying stage: the first stage in lifecycle.yaml whose `when` holds (the last is the default)."""

from __future__ import annotations

from nurture.core.conditions import Compiled, Facts


def buying_stage(stages: tuple[tuple[str, Compiled], ...], facts: Facts) -> str:
    for name, when in stages:
        if when.test(facts):
            return name
    return stages[-1][0]
