"""One CSV lead row, parsed and validated: a row the store can take, or the `RowError` that
quarantines it. Every value is checked against the real column (`FieldLimits`: length,
range, NUL) so the database never refuses a row the importer let through."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nurture.core.domain import LEAD_FIELDS
from nurture.services.import_rows import (
    SURROGATE_RE,
    RowError,
    checked_email,
    clean,
    show,
    time_field,
)
from nurture.services.ports import FieldLimits


def whole_number(value: str, hi: int) -> int:
    """A count such as company_size: digits (thousands commas allowed) or an integral
    decimal like `12.0`; non-negative and at most `hi` (what the column holds). Raises
    ValueError."""
    text = value.replace(",", "").strip()
    if len(text) > 40:
        raise ValueError("is too large")
    if re.fullmatch(r"[+-]?\d+", text):
        number = int(text)
    else:
        f = float(text)  # ValueError for words
        if not math.isfinite(f) or not f.is_integer():
            raise ValueError("is not a whole number")
        number = int(f)
    if number < 0:
        raise ValueError("is negative")
    if number > hi:
        raise ValueError(f"is larger than {hi:,}")
    return number


def _company_size(value: str, limits: FieldLimits) -> int:
    try:
        return whole_number(value, limits.int_max("leads", "company_size"))
    except ValueError as exc:
        msg = str(exc) if str(exc).startswith("is ") else "is not a whole number"
        raise RowError("bad_company_size",
                       f"company_size {show(value, limits.type_name)} {msg}") from None


@lru_cache(maxsize=1024)
def _known_zone(value: str) -> bool:
    """Whether the zone database has `value` (cached: ZoneInfo keeps only a few zones
    strongly, so a million rows would otherwise reload the same files over and over)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _timezone(value: str, limits: FieldLimits) -> str:
    if limits.text_problem("leads", "timezone", value) or not _known_zone(value):
        raise RowError("bad_timezone", f"unknown time zone {show(value, limits.type_name)}")
    return value


def _created_at(value: str, limits: FieldLimits) -> Any:
    return time_field(value, "created_at", "bad_created_at", limits)


# columns with a type of their own: parsed only when a value is given
_TYPED: dict[str, Callable[[str, FieldLimits], Any]] = {
    "company_size": _company_size, "timezone": _timezone, "created_at": _created_at}


def _check_raw(raw: dict[str | None, Any]) -> None:
    """Refuse what no column may hold: surplus values, bytes that were not UTF-8, NUL."""
    for key, value in raw.items():
        if key is None:
            raise RowError("extra_values", "more values than header columns")
        if value is not None and SURROGATE_RE.search(value):
            raise RowError("not_utf8", f"{key or 'a value'} is not valid UTF-8 text")
        if value is not None and "\x00" in value:
            raise RowError("nul_character", f"{key or 'a value'} contains a NUL character")


def lead_row(raw: dict[str | None, Any], limits: FieldLimits) -> dict[str, Any]:
    """Validate and normalise one CSV row (header name -> value, surplus values under None
    as csv.DictReader has them); raises RowError with the reason. Known lead fields become
    columns, other non-empty values custom attributes."""
    _check_raw(raw)
    raw_email = raw.get("email") or ""
    if not raw_email.strip():
        raise RowError("missing_email", "email is empty")
    row: dict[str, Any] = {"email": checked_email(raw_email), "attributes": {}}
    for name, given in raw.items():
        key, value = name.strip(), clean(given)  # type: ignore[union-attr]  # no None key left
        if key == "email" or not key:
            continue
        typed = _TYPED.get(key)
        if typed is not None:
            if value is not None:
                row[key] = typed(value, limits)
        elif key in LEAD_FIELDS:
            problem = None if value is None else limits.text_problem("leads", key, value)
            if problem:
                raise RowError("too_long", problem)
            row[key] = value
        elif value is not None:
            row["attributes"][key] = value
    return row
