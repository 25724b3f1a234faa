"""Compile the condition language into plain Python predicates.

Compiled once per config (regexes too), evaluated per lead with no parsing in the hot path.
Each compiled condition can also say, in words, which branch held — the reason a transition
records ("why is this lead an MQL?").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nurture.core.config import Condition
from nurture.core.domain import ActivityFact

DAY = timedelta(days=1)


@dataclass(slots=True)
class Facts:
    """What a condition may look at for one lead at one moment."""

    fields: dict[str, Any]
    fit: float
    engagement: float
    grade: str
    activities: list[ActivityFact]  # only those that count (since engagement_since, <= as_of)
    as_of: datetime
    stage_entered_at: datetime

    @property
    def score(self) -> float:
        return self.fit + self.engagement

    def last_engaged_at(self) -> datetime | None:
        last = None
        for a in self.activities:
            if a.points > 0 and (last is None or a.occurred_at > last):
                last = a.occurred_at
        return last


Predicate = Callable[[Facts], bool]


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


@dataclass(slots=True, frozen=True)
class Compiled:
    """A compiled condition: `test(facts)` and a one-line description for reasons."""

    test: Predicate
    description: str
    branches: tuple[Compiled, ...] = ()
    is_any: bool = False

    def __call__(self, facts: Facts) -> bool:
        return self.test(facts)

    def explain(self, facts: Facts, path: str) -> tuple[str, str]:
        """For a condition that holds: (rule path, description) of the branch that fired."""
        if self.is_any:
            for i, branch in enumerate(self.branches):
                if branch.test(facts):
                    return branch.explain(facts, f"{path}.any[{i}]")
        return path, self.description


def _field_tests(cond: Condition) -> list[tuple[Predicate, str]]:
    name = cond.field
    assert name is not None
    out: list[tuple[Predicate, str]] = []
    sentinel = object()

    def get(f: Facts) -> Any:
        value = f.fields.get(name, sentinel)
        return sentinel if value is None or value == "" else value

    if cond.exists is not None:
        want = cond.exists
        out.append((lambda f: (get(f) is not sentinel) == want,
                    f"{name} {'is set' if want else 'is missing'}"))
    if "equals" in cond.model_fields_set:
        target = _norm(cond.equals)
        out.append((lambda f: (v := get(f)) is not sentinel and _norm(v) == target,
                    f"{name} = {_fmt(cond.equals)}"))
    if cond.in_ is not None:
        options = {_norm(v) for v in cond.in_ if not isinstance(v, list | dict)}
        out.append((lambda f: (v := get(f)) is not sentinel and _norm(v) in options,
                    f"{name} in [{_fmt(cond.in_)}]"))
    if cond.matches is not None:
        rx = re.compile(cond.matches)
        out.append((lambda f: (v := get(f)) is not sentinel and rx.search(str(v)) is not None,
                    f"{name} matches /{cond.matches}/"))
    if cond.at_least is not None:
        lo = cond.at_least
        out.append((lambda f: (n := _number(get(f))) is not None and n >= lo,
                    f"{name} ≥ {_fmt(lo)}"))
    if cond.at_most is not None:
        hi = cond.at_most
        out.append((lambda f: (n := _number(get(f))) is not None and n <= hi,
                    f"{name} ≤ {_fmt(hi)}"))
    return out


def _activity_test(cond: Condition) -> tuple[Predicate, str]:
    kind = cond.activity
    need = int(cond.at_least or 1)
    days = cond.within_days

    def test(f: Facts) -> bool:
        since = f.as_of - days * DAY if days else None
        count = 0
        for a in f.activities:
            if a.type == kind and (since is None or a.occurred_at >= since):
                count += 1
                if count >= need:
                    return True
        return False

    words = f"{need}× {kind}" if need > 1 else str(kind)
    return test, words + (f" within {days} days" if days else "")


def _no_engagement_test(days: int) -> tuple[Predicate, str]:
    span = days * DAY

    def test(f: Facts) -> bool:
        last = f.last_engaged_at()
        start = f.stage_entered_at if last is None else max(last, f.stage_entered_at)
        return f.as_of - start >= span

    return test, f"no engagement for {days} days"


def _score_tests(cond: Condition) -> list[tuple[Predicate, str]]:
    """The tests on scores and grade."""
    parts: list[tuple[Predicate, str]] = []
    if cond.score_at_least is not None:
        v = cond.score_at_least
        parts.append((lambda f: f.fit + f.engagement >= v, f"score ≥ {_fmt(v)}"))
    if cond.fit_at_least is not None:
        v1 = cond.fit_at_least
        parts.append((lambda f: f.fit >= v1, f"fit ≥ {_fmt(v1)}"))
    if cond.engagement_at_least is not None:
        v2 = cond.engagement_at_least
        parts.append((lambda f: f.engagement >= v2, f"engagement ≥ {_fmt(v2)}"))
    if cond.engagement_below is not None:
        v3 = cond.engagement_below
        parts.append((lambda f: f.engagement < v3, f"engagement < {_fmt(v3)}"))
    if cond.grade_in is not None:
        grades = frozenset(cond.grade_in)
        parts.append((lambda f: f.grade in grades, f"grade in [{_fmt(cond.grade_in)}]"))
    return parts


def _nested_tests(cond: Condition) -> tuple[list[tuple[Predicate, str]], Compiled | None]:
    """The `all` / `any` / `not` tests, and the compiled `any` (it can explain its branch)."""
    parts: list[tuple[Predicate, str]] = []
    any_compiled: Compiled | None = None
    if cond.all is not None:
        subs = [compile_condition(c) for c in cond.all]
        parts.append((lambda f: all(s.test(f) for s in subs),
                      "(" + " and ".join(s.description for s in subs) + ")"))
    if cond.any is not None:
        branches = tuple(compile_condition(c) for c in cond.any)
        any_compiled = Compiled(lambda f: any(b.test(f) for b in branches),
                                "(" + " or ".join(b.description for b in branches) + ")",
                                branches, True)
        parts.append((any_compiled.test, any_compiled.description))
    if cond.not_ is not None:
        inner = compile_condition(cond.not_)
        parts.append((lambda f: not inner.test(f), f"not {inner.description}"))
    return parts, any_compiled


def compile_condition(cond: Condition | None) -> Compiled:
    """Turn a validated `Condition` into a fast predicate; `None` always holds."""
    if cond is None:
        return Compiled(lambda f: True, "always")
    parts: list[tuple[Predicate, str]] = []
    if cond.field is not None:
        parts.extend(_field_tests(cond))
    if cond.activity is not None:
        parts.append(_activity_test(cond))
    parts.extend(_score_tests(cond))
    if cond.no_engagement_days is not None:
        parts.append(_no_engagement_test(cond.no_engagement_days))
    nested, any_compiled = _nested_tests(cond)
    parts.extend(nested)

    if len(parts) == 1 and any_compiled is not None:
        return any_compiled
    tests = tuple(p for p, _ in parts)
    description = " and ".join(d for _, d in parts)
    if len(tests) == 1:
        return Compiled(tests[0], description)
    return Compiled(lambda f: all(t(f) for t in tests), description)
