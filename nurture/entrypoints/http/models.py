"""Request and response models of the HTTP API.

`SalesFeedback` is the real parser of `POST /sales/feedback`: its validators call the same
column checks as the store (lengths, NUL, time range), so a refused body names the field
and never reaches the database. `feedback_problem` turns pydantic's errors into today's one
`{"error": ...}` message. Activities are validated item by item by
`nurture.services.ingest.activity_row` (the one door shared with JSONL import, with its
per-item codes); `Activity` only describes that shape for the OpenAPI schema. The response
models document the answers (the routes return them as plain JSON, unchanged).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from sqlalchemy import Column

from nurture.core.domain import STANDARD_ACTIVITY_TYPES
from nurture.core.sales import ACTIONS
from nurture.services.ingest import parse_time
from nurture.store.limits import string_problem, time_problem
from nurture.store.tables import handoffs as HANDOFFS
from nurture.store.tables import leads as LEADS
from nurture.store.tables import transitions as TRANSITIONS

FEEDBACK_SHAPE = (f"expected {{email, action: {'|'.join(ACTIONS)}, reason?, note?, actor?, "
                  "at?, amount?}")


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    """Every refusal has the same body: `{"error": message, ...}`."""
    return JSONResponse({"error": message, **extra}, status_code=status)


def _refuse(problem: str) -> PydanticCustomError:
    # the message goes through the context: it may hold braces
    return PydanticCustomError("nurture", "{problem}", {"problem": problem})


def _text(name: str, column: Column, required: bool = False) -> BeforeValidator:
    """A string that fits `column` (type, NUL, length); optional ones may be null."""
    def check(value: Any) -> Any:
        if value is None and not required:
            return None
        problem = string_problem(value, column, f"`{name}`")
        if problem:
            raise _refuse(problem)
        return value
    return BeforeValidator(check)


def _at(value: Any) -> datetime | None:
    """ISO 8601 (no offset means UTC) within the range the database holds; null is now."""
    if value is None:
        return None
    try:
        at = parse_time(value)
    except ValueError:
        raise _refuse("`at` must be an ISO 8601 datetime") from None
    problem = time_problem(at, "at")
    if problem:
        raise _refuse(problem)
    return at


def _amount(value: Any) -> Any:
    """A deal value: a finite number >= 0 (a boolean is not a number)."""
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        ok = ok and math.isfinite(value) and value >= 0
    except OverflowError:  # an integer too large for a float
        ok = False
    if not ok:
        raise _refuse("`amount` (deal value) must be a number >= 0")
    return value


class SalesFeedback(BaseModel):
    """`POST /sales/feedback`: what sales decided about a lead. Unknown keys are ignored.
    Fields are checked in this order; the first problem is the answer."""

    action: Literal[ACTIONS]  # type: ignore[valid-type]
    email: Annotated[str, _text("email", LEADS.c.email, required=True),
                     Field(json_schema_extra={"format": "email"})]
    reason: Annotated[str | None, _text("reason", HANDOFFS.c.outcome_reason)] = None
    note: Annotated[str | None, _text("note", TRANSITIONS.c.note)] = None
    actor: Annotated[str | None, _text("actor", TRANSITIONS.c.actor)] = None
    at: Annotated[datetime | None, BeforeValidator(_at)] = None
    amount: Annotated[int | float | None, BeforeValidator(_amount)] = None


def feedback_problem(exc: ValidationError) -> str:
    """Today's message for a refused feedback body: the expected shape when it is not an
    object or the action is wrong, else the first field's problem."""
    errors = exc.errors()
    if any(not e["loc"] or e["loc"][0] == "action" for e in errors):
        return FEEDBACK_SHAPE
    first = errors[0]
    if first["type"] == "missing":  # only `email` is required besides `action`
        return string_problem(None, LEADS.c.email, "`email`") or FEEDBACK_SHAPE
    return first["msg"]


class Activity(BaseModel):
    """One web or app event (schema only: see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    id: str | int = Field(description="the sender's event id: a resent event is a duplicate")
    email: str = Field(json_schema_extra={"format": "email"})
    type: str = Field(description="a standard activity type, or one the lifecycle scores or "
                      "declares (lower_snake_case)", json_schema_extra={"anyOf": [
                          {"enum": sorted(STANDARD_ACTIVITY_TYPES)},
                          {"pattern": r"^[a-z][a-z0-9_]{0,63}$"}]})
    occurred_at: datetime
    properties: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    error: str


class ActivityCounts(BaseModel):
    inserted: int
    duplicates: int
    leads_created: int


class ActivityProblem(BaseModel):
    index: int
    code: str
    error: str


class ActivityProblems(ErrorBody):
    problems: list[ActivityProblem]
    stored: ActivityCounts


class FeedbackResult(BaseModel):
    """The transition recorded (see `nurture.services.feedback.record_feedback`)."""

    model_config = ConfigDict(extra="allow")

    email: str
    lead_id: int
    action: str


class WebhookResult(BaseModel):
    """The stored batch; when applied, the counts of `ApplyReport`."""

    model_config = ConfigDict(extra="allow")

    stored: int
    applied: bool


class Unsubscribed(BaseModel):
    unsubscribed: bool


class Health(BaseModel):
    status: str
    database: str
    transport: str
    webhook_signing: str


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for refusals: the `{"error": ...}` body."""
    return {status: {"model": ErrorBody} for status in statuses}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its raw body itself (to check size and
    signature first): the JSON request body it expects."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}
