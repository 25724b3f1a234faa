"""`POST /webhooks/sendgrid`: the SendGrid Event Webhook."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.adapters.sendgrid_events import parse_batch
from nurture.entrypoints.http.deps import ContainerDep, SignedBody, cancel_scheduled, signed_body
from nurture.entrypoints.http.models import WebhookResult, documented, error_response, json_body

router = APIRouter()
EVENTS_SCHEMA = {"type": "array", "items": {"type": "object"}}


@router.post("/webhooks/sendgrid", response_model=None,
             responses={200: {"model": WebhookResult}, 202: {"model": WebhookResult}}
             | documented(400, 403, 413, 503), openapi_extra=json_body(EVENTS_SCHEMA))
async def sendgrid_webhook(body: Annotated[SignedBody, Depends(signed_body)],
                           c: ContainerDep, background: BackgroundTasks) -> Response:
    """SendGrid Event Webhook. 403 and nothing stored when unsigned, forged or stale; 400
    when the body is not a JSON array; 503 when the batch cannot be stored (SendGrid
    retries). Once the raw batch is durably stored the answer is 2xx even if applying it
    failed: each event is applied on its own, a bad one is kept with its reason, and what
    failed is retried by later runs (daily cycle, instant routing, `webhooks replay`)."""
    batch = parse_batch(body.raw)
    try:  # stored and applied in one transaction (parsing each event on the same thread)
        batch_id, report = await run_in_threadpool(
            c.events.ingest, body.raw.decode("utf-8"), body.signed, batch,
            c.settings.scanner_click_seconds)
    except Exception:  # noqa: BLE001 - nothing stored: SendGrid must send it again
        return error_response(503, "the batch could not be stored now; send it again later")
    if report is None:  # stored raw, not applied: retried by later runs
        return JSONResponse({"stored": batch_id, "applied": False, "retried_later": True},
                            status_code=202)
    if report.suppressed_emails:
        background.add_task(cancel_scheduled, c.app, report.suppressed_emails)
    return JSONResponse({"stored": batch_id, "applied": True} | report.as_dict())
