"""Which activity types the engine accepts: the standard ones plus those the lifecycle
scores or declares. One pure policy for every door that knows the configuration (the
activity API; `nurture validate` states the same set)."""

from __future__ import annotations

from collections.abc import Iterable

from nurture.core.config import Lifecycle
from nurture.core.domain import STANDARD_ACTIVITY_TYPES


def known_activity_types(lifecycle: Lifecycle | None) -> frozenset[str]:
    """The accepted activity types: standard, scored (`scoring.engagement`) and declared
    (`activity_types`). Without a lifecycle only the standard ones."""
    if lifecycle is None:
        return STANDARD_ACTIVITY_TYPES
    return (STANDARD_ACTIVITY_TYPES | frozenset(lifecycle.scoring.engagement)
            | frozenset(lifecycle.activity_types))


def unknown_type_problem(activity_type: str, known: Iterable[str]) -> str | None:
    """Why `activity_type` is refused (naming the known ones, so a caller can fix a typo),
    or None when it is accepted."""
    known = frozenset(known)
    if activity_type in known:
        return None
    return f"unknown activity type {activity_type!r}; known: {', '.join(sorted(known))}"
