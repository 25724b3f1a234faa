"""The HTTP app (`nurture serve`): SendGrid Event Webhook, one-click unsubscribe, the
activity API and a health check. FastAPI on uvicorn, both already installed with Prefect.

Each route is thin: read and check the raw request, then call one store/engine function in a
worker thread. A refused request changes nothing.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import math
from datetime import UTC, datetime
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.adapters.sendgrid_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureVerifier,
    WebhookRejected,
    parse_batch,
)
from nurture.core.domain import STANDARD_ACTIVITY_TYPES
from nurture.core.unsubscribe import BadToken, read_token
from nurture.services.ingest import RowError, activity_row, db_reason, loads_json, parse_time
from nurture.settings import Settings
from nurture.store.limits import string_problem, time_problem
from nurture.store.tables import handoffs as HANDOFFS
from nurture.store.tables import leads as LEADS
from nurture.store.tables import transitions as TRANSITIONS
from nurture.wiring import App

MAX_ACTIVITIES = 1000


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise WebhookRejected(413, f"body larger than {limit} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise WebhookRejected(413, f"body larger than {limit} bytes")
    return body


def _why(exc: ValueError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return getattr(exc, "msg", None) or str(exc)


def feedback_problem(data: dict[str, Any]) -> str | None:
    """Why a sales feedback body cannot be recorded, naming the field (types, NUL, the real
    column lengths), or None."""
    checks = (("email", LEADS.c.email, True), ("reason", HANDOFFS.c.outcome_reason, False),
              ("note", TRANSITIONS.c.note, False), ("actor", TRANSITIONS.c.actor, False))
    for name, column, required in checks:
        value = data.get(name)
        if value is None and not required:
            continue
        problem = string_problem(value, column, f"`{name}`")
        if problem:
            return problem
    return None


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;
color:#1f2937}}button{{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:0;
background:#1f2937;color:#fff;cursor:pointer}}</style></head><body>{body}</body></html>""",
                        status_code=status)


def create_app(app: App | None = None) -> FastAPI:
    """Build the ASGI app around one `App` (settings, store, config) — built here, once,
    never at import time."""
    app = app or App(Settings())
    settings = app.settings
    verifier = (SignatureVerifier(settings.sendgrid_webhook_public_key,
                                  settings.webhook_max_age_seconds)
                if settings.sendgrid_webhook_public_key else None)
    api = FastAPI(title="nurture", version="1", docs_url="/docs", redoc_url=None)
    api.state.nurture = app

    events = app.webhook_events

    @api.exception_handler(WebhookRejected)
    async def _rejected(request: Request, exc: WebhookRejected) -> JSONResponse:
        return _error(exc.status, str(exc))

    @api.get("/health")
    def health() -> dict[str, Any]:
        from nurture.store.db import is_migrated

        return {"status": "ok", "database": "migrated" if is_migrated(app.engine)
                else "needs `nurture db upgrade`", "transport": settings.transport,
                "webhook_signing": "verified" if verifier else (
                    "UNSIGNED ACCEPTED (development)" if settings.webhook_allow_unsigned
                    else "not configured: webhook refused")}

    # -- SendGrid Event Webhook ---------------------------------------------------------
    def _cancel_scheduled(emails: list[str]) -> None:
        """After a response: stop scheduled sends to newly suppressed addresses (a failure
        is retried by later runs through `retry_provider_events`)."""
        from nurture.services.events import cancel_scheduled_sends

        with contextlib.suppress(Exception):  # retried later; the request is answered
            cancel_scheduled_sends(app, emails)

    @api.post("/webhooks/sendgrid")
    async def sendgrid_webhook(request: Request, background: BackgroundTasks) -> Response:
        """SendGrid Event Webhook. 403 and nothing stored when unsigned, forged or stale; 400
        when the body is not a JSON array; 503 when the batch cannot be stored (SendGrid
        retries). Once the raw batch is durably stored the answer is 2xx even if applying it
        failed: each event is applied on its own, a bad one is kept with its reason, and what
        failed is retried by later runs (daily cycle, instant routing, `webhooks replay`)."""
        raw = await _read_body(request, settings.max_body_bytes)
        if verifier is not None:
            verifier.verify(raw, request.headers.get(SIGNATURE_HEADER),
                            request.headers.get(TIMESTAMP_HEADER))
            signed = True
        elif settings.webhook_allow_unsigned:
            signed = False
        else:
            raise WebhookRejected(403, "no webhook verification key is configured "
                                  "(NURTURE_SENDGRID_WEBHOOK_PUBLIC_KEY); unsigned batches are "
                                  "accepted only with NURTURE_WEBHOOK_ALLOW_UNSIGNED=true")
        batch = parse_batch(raw)
        try:
            batch_id = await run_in_threadpool(events.store_batch, raw.decode("utf-8"),
                                               signed, len(batch))
        except Exception:  # noqa: BLE001 - nothing stored: SendGrid must send it again
            return _error(503, "the batch could not be stored now; send it again later")
        try:
            report = await run_in_threadpool(events.apply_batch, batch_id, batch,
                                             settings.scanner_click_seconds)
        except Exception as exc:  # noqa: BLE001 - stored raw: retried by later runs
            with contextlib.suppress(Exception):
                await run_in_threadpool(events.mark_failed, batch_id, repr(exc))
            return JSONResponse({"stored": batch_id, "applied": False,
                                 "retried_later": True}, status_code=202)
        if report.suppressed_emails:
            background.add_task(_cancel_scheduled, report.suppressed_emails)
        return JSONResponse({"stored": batch_id, "applied": True} | report.as_dict())

    # -- one-click unsubscribe (RFC 8058) and the page behind the visible link -----------
    def _token(token: str) -> dict:
        try:
            return read_token(app.secret, token)
        except BadToken as exc:
            raise WebhookRejected(400, str(exc)) from None

    @api.get("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe_page(token: str) -> HTMLResponse:
        # GET never unsubscribes: mail scanners follow links; a person presses the button
        try:
            data = read_token(app.secret, token)
        except BadToken:
            return _page("Link not valid", "<h1>This unsubscribe link is not valid</h1>"
                         "<p>Please use the link from the most recent email.</p>", 400)
        email = html.escape(data["email"])
        return _page("Unsubscribe", f"<h1>Unsubscribe</h1><p>Stop marketing email to "
                     f"<strong>{email}</strong>?</p><form method='post'>"
                     "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
                     "<button type='submit'>Unsubscribe</button></form>")

    @api.post("/unsubscribe/{token}")
    async def unsubscribe(token: str, request: Request, background: BackgroundTasks
                          ) -> Response:
        """RFC 8058 one-click unsubscribe: suppress the address, then (after answering) cancel
        sends already scheduled at SendGrid for it."""
        data = _token(token)
        await _read_body(request, 10_000)  # RFC 8058 body `List-Unsubscribe=One-Click`
        try:
            await run_in_threadpool(events.unsubscribe, data["email"], "one-click",
                                    data.get("touch_id"), data.get("campaign"))
        except Exception:  # noqa: BLE001 - the database is unavailable: nothing recorded
            return _error(503, "the unsubscribe could not be recorded now; please try again")
        background.add_task(_cancel_scheduled, [data["email"].strip().lower()])
        if "text/html" in request.headers.get("accept", ""):
            return _page("Unsubscribed", "<h1>You are unsubscribed</h1><p>You will not get "
                         "marketing email from us again.</p>")
        return JSONResponse({"unsubscribed": True})

    # -- activity API (web and app events) ------------------------------------------------
    def _authorised(request: Request) -> None:
        if not settings.api_key:
            raise WebhookRejected(503, "the activity API is disabled: set NURTURE_API_KEY")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode()):
            raise WebhookRejected(401, "missing or wrong bearer API key")

    @api.post("/activities", status_code=202)
    async def activities(request: Request) -> Response:
        _authorised(request)
        raw = await _read_body(request, min(settings.max_body_bytes, 1_000_000))
        try:
            data = loads_json(raw)
        except ValueError as exc:  # includes bytes that are not UTF-8 and too-deep nesting
            return _error(400, f"the body is not JSON ({_why(exc)})")
        items = data if isinstance(data, list) else [data]
        if not items:
            return _error(400, "no activities given")
        if len(items) > MAX_ACTIVITIES:
            return _error(413, f"at most {MAX_ACTIVITIES} activities per request")
        allowed = (STANDARD_ACTIVITY_TYPES | set(app.config.lifecycle.scoring.engagement)
                   | set(app.config.lifecycle.activity_types))
        rows, problems = [], []
        for i, obj in enumerate(items):
            try:
                row = activity_row(obj)
                if row["type"] not in allowed:
                    raise RowError("unknown_type", f"unknown activity type {row['type']!r}; "
                                   f"known: {', '.join(sorted(allowed))}")
                rows.append(row | {"_index": i})
            except RowError as exc:
                problems.append({"index": i, "code": exc.code, "error": str(exc)})

        def refused(row: dict[str, Any], exc: Exception) -> None:
            err = db_reason(exc)
            problems.append({"index": row["_index"], "code": err.code, "error": str(err)})

        # valid events are stored even when others in the batch are not: nothing valid is
        # dropped, and resending the whole batch is safe (ids de-duplicate)
        counts = (await run_in_threadpool(app.store.insert_activities, rows, "api", refused)
                  if rows else {"inserted": 0, "duplicates": 0, "leads_created": 0})
        if problems:
            problems.sort(key=lambda p: p["index"])
            return _error(422, f"{len(problems)} of {len(items)} activities are invalid and "
                          f"were not stored; the {len(items) - len(problems)} valid one(s) "
                          "were", problems=problems, stored=counts)
        return JSONResponse(counts, status_code=202)

    # -- sales feedback (the same service as `nurture sales` and the Prefect flow) --------
    @api.post("/sales/feedback")
    async def sales_feedback(request: Request) -> Response:
        from nurture.core.sales import ACTIONS, FeedbackRefused, record_feedback
        from nurture.store.sales import LeadNotFound, SalesStore

        _authorised(request)
        raw = await _read_body(request, 100_000)
        try:
            data = loads_json(raw)
        except ValueError as exc:
            return _error(400, f"the body is not JSON ({_why(exc)})")
        if not isinstance(data, dict) or data.get("action") not in ACTIONS:
            return _error(422, f"expected {{email, action: {'|'.join(ACTIONS)}, reason?, "
                          "note?, actor?, at?, amount?}")
        problem = feedback_problem(data)
        if problem:
            return _error(422, problem)
        try:
            at = parse_time(data["at"]) if data.get("at") is not None else datetime.now(UTC)
        except ValueError:
            return _error(422, "`at` must be an ISO 8601 datetime")
        problem = time_problem(at, "at")
        if problem:
            return _error(422, problem)
        amount = data.get("amount")
        if amount is not None and (isinstance(amount, bool) or not isinstance(
                amount, int | float) or not math.isfinite(amount) or amount < 0):
            return _error(422, "`amount` (deal value) must be a number >= 0")
        try:
            result = await run_in_threadpool(
                record_feedback, SalesStore(app.engine), app.rules, data["email"],
                data["action"], at, reason=data.get("reason"), note=data.get("note"),
                actor=str(data.get("actor") or "sales:api"), amount=amount)
        except LeadNotFound as exc:
            return _error(404, str(exc))
        except FeedbackRefused as exc:
            return _error(409, exc.door_message("field '{}'"))
        return JSONResponse(result)

    return api
