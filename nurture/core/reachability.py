"""Static reasoning over conditions: can a condition ever hold, and does one imply another?

Used by `nurture validate` to find steps no lead can reach and campaigns whose audience a
higher-priority campaign takes entirely. A condition becomes a small disjunction of
*regions* (allowed grades, a fit-score interval, per-field constraints). Everything the
analysis cannot model (engagement, activities, regexes, most negations) is left
unconstrained, so the answers err towards "reachable": validation never refuses a config for
a contradiction it only imagined.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from nurture.core.config import Condition, Scoring
from nurture.core.domain import GRADES as ALL_GRADES

GRADES = frozenset(ALL_GRADES)
MAX_REGIONS = 256


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


@dataclass(frozen=True)
class FieldCons:
    """What one lead field must satisfy in a region."""

    values: frozenset | None = None      # allowed (normalised) values; None: any value
    excluded: frozenset = frozenset()    # values it must not have
    lo: float | None = None
    hi: float | None = None
    exists: bool | None = None           # True: must be set; False: must be missing
    patterns: frozenset = frozenset()    # regexes it must match (not evaluated)
    empty: bool = False                  # contradictory

    def implies_set(self) -> bool:
        return bool(self.exists or self.values is not None or self.lo is not None
                    or self.hi is not None or self.patterns)

    def meet(self, other: FieldCons) -> FieldCons:
        values = self.values if other.values is None else (
            other.values if self.values is None else self.values & other.values)
        exists = self.exists
        empty = self.empty or other.empty
        if other.exists is not None:
            if exists is not None and exists != other.exists:
                empty = True
            exists = other.exists
        lo = max((x for x in (self.lo, other.lo) if x is not None), default=None)
        hi = min((x for x in (self.hi, other.hi) if x is not None), default=None)
        return FieldCons(values, self.excluded | other.excluded, lo, hi, exists,
                         self.patterns | other.patterns, empty)

    def satisfiable(self) -> bool:
        if self.empty:
            return False
        if self.exists is False:
            return (self.values is None and self.lo is None and self.hi is None
                    and not self.patterns)
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            return False
        if self.values is not None:
            left = self.values - self.excluded
            if self.lo is not None or self.hi is not None:
                left = {v for v in left if _in_range(v, self.lo, self.hi)}
            return bool(left)
        return True

    def within(self, outer: FieldCons) -> bool:
        """Every value this allows, `outer` allows (conservative: False when unsure)."""
        mine = None if self.values is None else self.values - self.excluded
        if outer.exists is True and not self.implies_set():
            return False
        if outer.exists is False and self.exists is not False:
            return False
        if outer.values is not None and (mine is None or not mine <= outer.values):
            return False
        if outer.excluded and not (outer.excluded <= self.excluded
                                   or (mine is not None and not mine & outer.excluded)):
            return False
        for bound, attr, better in ((outer.lo, "lo", lambda a, b: a >= b),
                                    (outer.hi, "hi", lambda a, b: a <= b)):
            if bound is None:
                continue
            own = getattr(self, attr)
            if own is not None and better(own, bound):
                continue
            if mine is not None and all(
                    _in_range(v, bound if attr == "lo" else None,
                              bound if attr == "hi" else None) for v in mine):
                continue
            return False
        return outer.patterns <= self.patterns


def _in_range(value: Any, lo: float | None, hi: float | None) -> bool:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return False
    return (lo is None or n >= lo) and (hi is None or n <= hi)


@dataclass(frozen=True)
class Region:
    """A conjunction: grades allowed, fit interval, field constraints."""

    grades: frozenset = GRADES
    fit_lo: float = float("-inf")
    fit_hi: float = float("inf")
    fields: dict[str, FieldCons] = field(default_factory=dict, hash=False)

    def meet(self, other: Region) -> Region:
        fields = dict(self.fields)
        for name, cons in other.fields.items():
            fields[name] = fields[name].meet(cons) if name in fields else cons
        return Region(self.grades & other.grades, max(self.fit_lo, other.fit_lo),
                      min(self.fit_hi, other.fit_hi), fields)


TOP = Region()


@dataclass(frozen=True)
class Space:
    """What the scoring table makes possible: the fit range and each grade's fit interval."""

    fit_min: float
    fit_max: float
    grade_bounds: dict[str, tuple[float, float]]

    @classmethod
    def of(cls, scoring: Scoring) -> Space:
        pos = sum(max(0.0, r.points) for r in scoring.fit)
        neg = sum(min(0.0, r.points) for r in scoring.fit)
        g = scoring.grades
        inf = float("inf")
        return cls(neg, pos, {"A": (g["A"], inf), "B": (g["B"], g["A"]),
                              "C": (g["C"], g["B"]), "D": (-inf, g["C"])})

    def grades(self, region: Region) -> frozenset:
        """The grades a lead in `region` can actually have."""
        lo, hi = max(region.fit_lo, self.fit_min), min(region.fit_hi, self.fit_max)
        return frozenset(gr for gr in region.grades
                         if self.grade_bounds[gr][0] <= hi and lo < self.grade_bounds[gr][1]
                         and lo <= hi)

    def satisfiable(self, region: Region) -> bool:
        return bool(self.grades(region)) and all(c.satisfiable()
                                                 for c in region.fields.values())

    def within(self, inner: Region, outer: Region) -> bool:
        if not self.satisfiable(inner):
            return True
        if not self.grades(inner) <= self.grades(replace(outer, fit_lo=float("-inf"),
                                                         fit_hi=float("inf"))):
            return False
        if max(inner.fit_lo, self.fit_min) < outer.fit_lo and outer.fit_lo > self.fit_min:
            return False
        if min(inner.fit_hi, self.fit_max) > outer.fit_hi and outer.fit_hi < self.fit_max:
            return False
        return all(inner.fields.get(n, FieldCons()).within(c) for n, c in outer.fields.items())


def _product(a: list[Region], b: list[Region]) -> list[Region]:
    out = [x.meet(y) for x in a for y in b]
    return out if len(out) <= MAX_REGIONS else [TOP]


def regions(cond: Condition | None) -> list[Region]:
    """The condition as a disjunction of regions (over-approximated where not modelled)."""
    if cond is None:
        return [TOP]
    parts: list[list[Region]] = []
    if cond.field is not None:
        parts.append([Region(fields={cond.field: _field_cons(cond)})])
    if cond.grade_in is not None:
        parts.append([Region(grades=frozenset(cond.grade_in))])
    if cond.fit_at_least is not None:
        parts.append([Region(fit_lo=float(cond.fit_at_least))])
    if cond.all is not None:
        acc = [TOP]
        for sub in cond.all:
            acc = _product(acc, regions(sub))
        parts.append(acc)
    if cond.any is not None:
        union = [r for sub in cond.any for r in regions(sub)]
        parts.append(union if len(union) <= MAX_REGIONS else [TOP])
    if cond.not_ is not None:
        parts.append([_negate(cond.not_)])
    acc = [TOP]
    for p in parts:
        acc = _product(acc, p)
    return acc


def _field_cons(cond: Condition) -> FieldCons:
    values = None
    if "equals" in cond.model_fields_set:
        values = frozenset({_norm(cond.equals)})
    if cond.in_ is not None:
        opts = frozenset(_norm(v) for v in cond.in_ if not isinstance(v, list | dict))
        values = opts if values is None else values & opts
    tested = values is not None or cond.at_least is not None or cond.at_most is not None \
        or cond.matches is not None
    exists = cond.exists
    empty = False
    if tested:
        if exists is False:
            empty = True
        exists = True
    return FieldCons(values, frozenset(), cond.at_least, cond.at_most, exists,
                     frozenset({cond.matches}) if cond.matches else frozenset(), empty)


def _negate(cond: Condition) -> Region:
    """`not` of the simple cases; anything else is left unconstrained."""
    own = cond.model_fields_set
    if own == {"grade_in"} and cond.grade_in is not None:
        return Region(grades=GRADES - frozenset(cond.grade_in))
    if cond.field is not None and own == {"field", "exists"}:
        return Region(fields={cond.field: FieldCons(exists=not cond.exists)})
    if cond.field is not None and own in ({"field", "equals"}, {"field", "in_"}):
        vals = [cond.equals] if "equals" in own else list(cond.in_ or [])
        return Region(fields={cond.field: FieldCons(
            excluded=frozenset(_norm(v) for v in vals if not isinstance(v, list | dict)))})
    return TOP


def can_hold(space: Space, *conds: list[Region]) -> bool:
    """Whether some lead can satisfy all of the given disjunctions at once."""
    acc = [TOP]
    for c in conds:
        acc = _product(acc, c)
    return any(space.satisfiable(r) for r in acc)


def covers(space: Space, outer: list[Region], inner: list[Region]) -> bool:
    """Whether every lead satisfying `inner` satisfies `outer` (conservative)."""
    return all(any(space.within(r, o) for o in outer) for r in inner
               if space.satisfiable(r))
