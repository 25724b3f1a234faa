"""`POST /activities`: web and app events, one object or an array of them. Every item is
checked on its own; the valid ones are stored even when others are refused."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.core.activities import known_activity_types, unknown_type_problem
from nurture.entrypoints.http.deps import (
    ContainerDep,
    body_within,
    parse_json,
    require_api_key,
)
from nurture.entrypoints.http.models import (
    Activity,
    ActivityCounts,
    ActivityProblems,
    documented,
    error_response,
    json_body,
)
from nurture.services.ingest import RowError, activity_row, db_reason
from nurture.services.ports import FieldLimits

MAX_ACTIVITIES = 1000
NO_ROWS = {"inserted": 0, "duplicates": 0, "leads_created": 0}
ACTIVITY_SCHEMA = Activity.model_json_schema()
BODY_SCHEMA = {"anyOf": [ACTIVITY_SCHEMA, {"type": "array", "items": ACTIVITY_SCHEMA,
                                           "minItems": 1, "maxItems": MAX_ACTIVITIES}]}

router = APIRouter()


def check_items(items: list[Any], known: Iterable[str], limits: FieldLimits
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows to store, each with its `_index`; problems `{index, code, error}`)."""
    rows, problems = [], []
    for i, obj in enumerate(items):
        try:
            row = activity_row(obj, limits)
            problem = unknown_type_problem(row["type"], known)
            if problem:
                raise RowError("unknown_type", problem)
            rows.append(row | {"_index": i})
        except RowError as exc:
            problems.append({"index": i, "code": exc.code, "error": str(exc)})
    return rows, problems


@router.post("/activities", status_code=202, response_model=None,
             dependencies=[Depends(require_api_key)],
             responses={202: {"model": ActivityCounts}, 422: {"model": ActivityProblems}}
             | documented(400, 401, 413, 503), openapi_extra=json_body(BODY_SCHEMA))
async def activities(raw: Annotated[bytes, Depends(body_within(
                         lambda s: min(s.max_body_bytes, 1_000_000)))],
                     c: ContainerDep) -> Response:
    data = parse_json(raw)  # includes bytes that are not UTF-8 and too-deep nesting
    items = data if isinstance(data, list) else [data]
    if not items:
        return error_response(400, "no activities given")
    if len(items) > MAX_ACTIVITIES:
        return error_response(413, f"at most {MAX_ACTIVITIES} activities per request")
    rows, problems = check_items(items, known_activity_types(c.app.config.lifecycle),
                                   c.app.store.limits)

    def refused(row: dict[str, Any], exc: Exception) -> None:
        err = db_reason(exc)
        problems.append({"index": row["_index"], "code": err.code, "error": str(err)})

    # valid events are stored even when others in the batch are not: nothing valid is
    # dropped, and resending the whole batch is safe (ids de-duplicate)
    counts = (await run_in_threadpool(c.app.store.insert_activities, rows, "api", refused)
              if rows else dict(NO_ROWS))
    if problems:
        problems.sort(key=lambda p: p["index"])
        return error_response(422, f"{len(problems)} of {len(items)} activities are invalid "
                              f"and were not stored; the {len(items) - len(problems)} valid "
                              "one(s) were", problems=problems, stored=counts)
    return JSONResponse(counts, status_code=202)
