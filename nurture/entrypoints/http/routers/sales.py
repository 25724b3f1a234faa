"""`POST /sales/feedback`: the same service as `nurture sales` and the Prefect flow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from nurture.core.domain import LeadNotFound
from nurture.core.sales import FeedbackRefused
from nurture.entrypoints.http.deps import (
    ContainerDep,
    body_within,
    parse_json,
    require_api_key,
)
from nurture.entrypoints.http.models import (
    FeedbackResult,
    SalesFeedback,
    documented,
    error_response,
    feedback_problem,
    json_body,
)
from nurture.services.feedback import record_feedback
from nurture.store.sales import SalesStore

router = APIRouter()


@router.post("/sales/feedback", response_model=None,
             dependencies=[Depends(require_api_key)],
             responses={200: {"model": FeedbackResult}}
             | documented(400, 401, 404, 409, 413, 422, 503),
             openapi_extra=json_body(SalesFeedback.model_json_schema()))
async def sales_feedback(raw: Annotated[bytes, Depends(body_within(lambda s: 100_000))],
                         c: ContainerDep) -> Response:
    """Record what sales decided; 404 for an unknown lead, 409 when the lead's stage does
    not allow the action (nothing changed)."""
    try:
        body = SalesFeedback.model_validate(parse_json(raw))
    except ValidationError as exc:
        return error_response(422, feedback_problem(exc))
    try:
        result = await run_in_threadpool(
            record_feedback, SalesStore(c.app.engine), c.app.rules, body.email, body.action,
            body.at or datetime.now(UTC), reason=body.reason, note=body.note,
            actor=body.actor or "sales:api", amount=body.amount)
    except LeadNotFound as exc:
        return error_response(404, str(exc))
    except FeedbackRefused as exc:
        return error_response(409, exc.door_message("field '{}'"))
    return JSONResponse(result)
