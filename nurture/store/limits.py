"""What the lead store's columns can hold, read from the table definitions themselves.

Every door (CSV, JSONL, HTTP, CLI) checks values against these limits before writing, so a
value the database would refuse becomes a clear per-row or per-field problem instead of an
aborted batch or a 500 — and nothing here can drift from the real schema, because it is
derived from `nurture.store.tables` rather than written down twice.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, SmallInteger, String

# signed integer ranges of the SQL integer types (SQLite stores 64-bit; PostgreSQL is exact)
_INT_RANGES = {SmallInteger: (-(2**15), 2**15 - 1), BigInteger: (-(2**63), 2**63 - 1),
               Integer: (-(2**31), 2**31 - 1)}

# Stored times: the earliest any of our data may carry (nothing about leads predates Unix
# time), and how far ahead of now a reported event may be (clock skew between systems).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
# Times an operator may *simulate* (`--as-of`): far enough for any plan, far from year 9999
# where adding a delay overflows Python's datetime.
LATEST_SIMULATED = datetime(2200, 1, 1, tzinfo=UTC)


def max_length(column: Column) -> int | None:
    """The declared length of a string column (None: unbounded text)."""
    return column.type.length if isinstance(column.type, String) else None


def int_range(column: Column) -> tuple[int, int]:
    """The values an integer column can store, from its SQL type (the widest variant)."""
    for typ, bounds in _INT_RANGES.items():
        if isinstance(column.type, typ):
            return bounds
    raise TypeError(f"{column} is not an integer column")


def string_problem(value: Any, column: Column, what: str | None = None) -> str | None:
    """Why `value` cannot be stored in `column` as text, or None when it can."""
    what = what or column.name
    if not isinstance(value, str):
        return f"{what} must be a string, not {type_name(value)}"
    if "\x00" in value:
        return f"{what} contains a NUL character"
    limit = max_length(column)
    if limit is not None and len(value) > limit:
        return f"{what} is {len(value):,} characters long; at most {limit} fit"
    return None


def time_problem(value: datetime, what: str, latest: datetime | None = None,
                 now: datetime | None = None) -> str | None:
    """Why a time is not plausible (before 1970; after `latest`, by default more than a day
    ahead of now), or None."""
    if value < EARLIEST:
        return f"{what} {value:%Y-%m-%d} is before {EARLIEST:%Y-%m-%d}"
    if latest is not None:
        if value >= latest:
            return f"{what} {value:%Y-%m-%d} is not before {latest:%Y-%m-%d}"
    elif value > (now or datetime.now(UTC)) + MAX_FUTURE:
        return f"{what} {value:%Y-%m-%d} is more than a day in the future"
    return None


def type_name(value: Any) -> str:
    """A JSON-ish name for the type of a value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def json_problem(value: Any, what: str, max_depth: int = 32) -> str | None:
    """Why a JSON value cannot be stored (NaN/Infinity, NUL characters, nesting deeper than
    `max_depth`), or None. Iterative, so a hostile depth cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"{what} is nested more than {max_depth} levels deep"
        if isinstance(item, dict):
            if any(isinstance(k, str) and "\x00" in k for k in item):
                return f"{what} has a key with a NUL character"
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        else:
            problem = _scalar_problem(item, what)
            if problem is not None:
                return problem
    return None


def _scalar_problem(item: Any, what: str) -> str | None:
    """Why one non-container JSON value cannot be stored, or None."""
    if isinstance(item, str):
        if "\x00" in item:
            return f"{what} contains a NUL character"
    elif isinstance(item, float):
        if not math.isfinite(item):
            return f"{what} contains NaN or Infinity, which JSON does not allow"
    elif item is not None and not isinstance(item, bool | int):
        return f"{what} contains {type_name(item)}"
    return None
