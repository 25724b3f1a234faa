"""One activity object, validated — the one door shared by JSONL import and `POST
/activities`: a row the store can take, or the `RowError` that refuses it. Ids longer than
the column are refused, never truncated: truncation would make distinct ids collide."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from nurture.services.import_rows import RowError, checked_email, show, time_field
from nurture.services.ports import FieldLimits

TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ACTIVITY_KEYS = frozenset({"id", "email", "type", "occurred_at", "properties"})


def loads_json(text: str) -> Any:
    """json.loads, with nesting too deep for Python's parser as a ValueError like any other
    bad JSON (NaN/Infinity are parsed and refused later, naming the field)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _external_id(ext: Any, limits: FieldLimits) -> str:
    # bool is an int subclass: `"id": true` is not an id
    if isinstance(ext, bool) or not isinstance(ext, str | int):
        raise RowError("missing_id" if ext is None else "bad_id",
                       "id (external id) is missing" if ext is None
                       else f"id must be a string or an integer, not {limits.type_name(ext)}")
    ext = str(ext).strip()
    if not ext:
        raise RowError("missing_id", "id (external id) is missing")
    problem = limits.text_problem("activities", "external_id", ext, "id")
    if problem:
        raise RowError("bad_id", problem)
    return ext


def _email(raw_email: Any, limits: FieldLimits) -> str:
    if not isinstance(raw_email, str):
        raise RowError("invalid_email",
                       f"email must be a string, not {limits.type_name(raw_email)}")
    return checked_email(raw_email)


def _type(typ: Any, limits: FieldLimits) -> str:
    if not isinstance(typ, str) or not TYPE_RE.match(typ) or \
            limits.text_problem("activities", "type", typ):
        raise RowError("invalid_type", f"invalid type {show(typ, limits.type_name)} "
                                       "(lower_snake_case expected)")
    return typ


def _properties(props: Any, limits: FieldLimits) -> dict[str, Any]:
    props = {} if props is None else props
    if not isinstance(props, dict):
        raise RowError("bad_properties", "properties must be an object")
    problem = limits.json_problem(props, "properties")
    if problem:
        raise RowError("bad_properties", problem)
    return props


def activity_row(obj: Any, limits: FieldLimits, now: datetime | None = None
                 ) -> dict[str, Any]:
    """Validate one activity object; raises RowError with the reason. Fields are checked
    in a fixed order (id, email, type, occurred_at, properties): the first problem is the
    one reported."""
    if not isinstance(obj, dict):
        raise RowError("not_an_object", "not a JSON object")
    unknown = set(obj) - ACTIVITY_KEYS
    if unknown:
        names = ", ".join(sorted(show(k, limits.type_name, 40) for k in unknown)[:10])
        raise RowError("unknown_keys", f"unknown key(s) {names}")
    return {"id": _external_id(obj.get("id"), limits),
            "email": _email(obj.get("email"), limits),
            "type": _type(obj.get("type"), limits),
            "occurred_at": time_field(obj.get("occurred_at"), "occurred_at",
                                      "bad_occurred_at", limits, now=now, future_code="future"),
            "properties": _properties(obj.get("properties"), limits)}
