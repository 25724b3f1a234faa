"""`nurture validate`'s reachability check: steps no lead can reach, and campaigns a
higher-priority one shadows entirely.

Judged on the regions of lead space each `when` can hold (`nurture.core.reachability`), given
the audience, the buying stage and the fit scores scoring can produce.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nurture.core.config import Campaign, Problem, SourceFile, Track
from nurture.core.reachability import Space, can_hold, covers, regions

if TYPE_CHECKING:
    from nurture.services.lint import Parsed


def reach_problems(parsed: Parsed) -> list[Problem]:
    """Steps no lead can reach and campaigns a higher-priority one shadows entirely."""
    lc = parsed.lifecycle
    if lc is None:
        return []
    space = Space.of(lc.scoring)
    problems: list[Problem] = []
    stage_regions = {s.name: regions(s.when) for s in lc.buying_stages}
    for c, source in parsed.campaigns:
        problems += _campaign_problems(space, c, source, parsed, stage_regions)
    return problems


def _campaign_problems(space: Space, c: Campaign, source: SourceFile, parsed: Parsed,
                       stage_regions: dict) -> list[Problem]:
    """An audience that can never match, a campaign shadowed by another, else its tracks."""
    audience = regions(c.audience.when)
    if not can_hold(space, audience):
        return [source.problem(("audience", "when"),
                               "this audience can never match any lead, so no "
                               "step of the campaign is ever sent")]
    shadow = _shadowed_by(space, c, audience, parsed)
    if shadow is not None:
        other, osource = shadow
        return [source.problem(
            ("audience",),
            f"campaign {c.name!r} can never be chosen: every lead in its audience "
            f"({', '.join(c.audience.lifecycle_stages)}) also matches higher-priority "
            f"campaign {other.name!r} (priority {other.priority}, "
            f"{osource.display}:{osource.lines.get(('audience',), 1)}), and a lead is in "
            "one campaign at a time")]
    problems: list[Problem] = []
    for ti, track in enumerate(c.tracks):
        why = _track_unreachable(space, c, track, audience, stage_regions)
        if why:
            problems.append(source.problem(("tracks", ti, "stage"),
                                           f"no lead can ever reach track "
                                           f"{track.name!r}: {why}"))
            continue
        context = [audience]
        if track.stage in stage_regions:
            context.append(stage_regions[track.stage])
        for si, step in enumerate(track.steps):
            if step.when is not None and not can_hold(space, *context, regions(step.when)):
                problems.append(source.problem(
                    ("tracks", ti, "steps", si, "when"),
                    f"no lead can ever reach step {step.id!r}: its `when` can never hold "
                    "for a lead in this campaign's audience and track (given the "
                    "audience, the buying stage and the fit scores scoring can produce)"))
    return problems


def _track_unreachable(space: Space, c: Campaign, track: Track, audience,
                       stage_regions: dict) -> str | None:
    """Why no lead of the audience can ever be on this track (None: some can)."""
    stages = set(c.audience.lifecycle_stages)
    has_recycled = any(t.stage == "recycled" for t in c.tracks)
    if track.stage == "recycled" and "recycled" not in stages:
        return ("it serves recycled leads, but the audience's lifecycle_stages "
                "leave out `recycled`")
    if track.stage != "recycled" and stages == {"recycled"} and has_recycled:
        return ("the audience is recycled leads only, and they get the "
                "`recycled` track")
    if track.stage in stage_regions and not can_hold(
            space, audience, stage_regions[track.stage]):
        return f"no lead in the audience can be in buying stage {track.stage!r}"
    return None


def _shadowed_by(space: Space, c: Campaign, audience, parsed: Parsed):
    for other, osource in parsed.campaigns:
        if other is c:
            break  # sorted by priority: only the ones before it win
        if other.priority == c.priority and other.name > c.name:
            continue
        if set(c.audience.lifecycle_stages) <= set(other.audience.lifecycle_stages) and \
                covers(space, regions(other.audience.when), audience):
            return other, osource
    return None
