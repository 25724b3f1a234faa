"""What every import door shares about one row: the error that quarantines it (with a code
for the counts and a reason for the operator), and the parsing of emails and times that the
CSV, JSONL and HTTP doors must agree on."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nurture.core.emails import InvalidEmail, normalize_email
from nurture.services.ports import FieldLimits

# one CSV field or JSONL line at most (csv's own default limit, made explicit)
MAX_FIELD_BYTES = 128 * 1024
# bytes that were not UTF-8, as decoded with errors="surrogateescape"
SURROGATE_RE = re.compile("[\udc80-\udcff]")


class RowError(ValueError):
    """One row is bad; `code` groups the quarantine counts, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ImportFileError(Exception):
    """The file as a whole cannot be imported (missing, no header, no email column)."""


def checked_email(value: str) -> str:
    """The lead key for an imported address (`nurture.core.emails`), or `RowError`."""
    try:
        return normalize_email(value)
    except InvalidEmail as exc:
        raise RowError("invalid_email", f"invalid email {show(value.strip(), str)}: "
                                        f"{exc.reason}") from None


def parse_time(value: Any) -> datetime:
    """ISO 8601 to aware UTC; a time without offset is taken as UTC. Any value Python cannot
    hold in UTC (year 1 with a positive offset, year 9999 with a negative one) is a
    ValueError like any other bad time, never an OverflowError."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("missing timestamp")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
        return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is outside the range of dates") from None


def clean(value: str | None) -> str | None:
    """A CSV value stripped; empty is None (nothing was given)."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def show(value: Any, type_name: Callable[[Any], str], limit: int = 60) -> str:
    """A value for a message: short, whatever was sent (`type_name` names what is neither
    text nor a number, in the store's words)."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "…")
    if isinstance(value, bool | int | float) or value is None:
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "…"
    return type_name(value)


def time_field(value: Any, what: str, code: str, limits: FieldLimits,
               now: datetime | None = None, future_code: str | None = None) -> datetime:
    """A stored time (`created_at`, `occurred_at`): ISO 8601 and plausible, or `RowError`
    with `code` (with `future_code`, when given, for a time too far ahead)."""
    try:
        at = parse_time(value)
    except ValueError as exc:
        if "range of dates" in str(exc):
            message = f"{what} {show(value, limits.type_name)} is outside the range of dates"
        else:
            message = f"{what} {show(value, limits.type_name)} is not ISO 8601"
        raise RowError(code, message) from None
    problem = limits.time_problem(at, what, now=now)
    if problem:
        if future_code is not None and at > limits.earliest:
            code = future_code  # plausible-looking, only too far ahead
        raise RowError(code, problem)
    return at


def db_reason(exc: Exception) -> RowError:
    """The database's own reason for refusing a row, as one line."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return RowError("database_refused", f"the database refused the row: {text[:300]}")
