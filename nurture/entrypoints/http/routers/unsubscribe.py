"""One-click unsubscribe (RFC 8058) and the page behind the visible link."""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.adapters.sendgrid_events import WebhookRejected
from nurture.core.unsubscribe import BadToken, read_token
from nurture.entrypoints.http.deps import ContainerDep, body_within, cancel_scheduled
from nurture.entrypoints.http.models import Unsubscribed, documented, error_response

router = APIRouter()
STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
         "\ncolor:#1f2937}button{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;"
         "border:0;\nbackground:#1f2937;color:#fff;cursor:pointer}")


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>{body}</body></html>""", status_code=status)


def valid_token(token: str, c: ContainerDep) -> dict[str, Any]:
    """The token's data, or a 400 before the body is read."""
    try:
        return read_token(c.app.secret, token)
    except BadToken as exc:
        raise WebhookRejected(400, str(exc)) from None


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, responses={
    400: {"description": "the link is not valid (an HTML page)", "content": {"text/html": {}}}})
def unsubscribe_page(token: str, c: ContainerDep) -> HTMLResponse:
    # GET never unsubscribes: mail scanners follow links; a person presses the button
    try:
        data = read_token(c.app.secret, token)
    except BadToken:
        return page("Link not valid", "<h1>This unsubscribe link is not valid</h1>"
                    "<p>Please use the link from the most recent email.</p>", 400)
    email = html.escape(data["email"])
    return page("Unsubscribe", f"<h1>Unsubscribe</h1><p>Stop marketing email to "
                f"<strong>{email}</strong>?</p><form method='post'>"
                "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
                "<button type='submit'>Unsubscribe</button></form>")


@router.post("/unsubscribe/{token}", response_model=None,
             responses={200: {"model": Unsubscribed}} | documented(400, 413, 503))
async def unsubscribe(data: Annotated[dict[str, Any], Depends(valid_token)],
                      _body: Annotated[bytes, Depends(body_within(lambda s: 10_000))],
                      request: Request, c: ContainerDep, background: BackgroundTasks
                      ) -> Response:
    """RFC 8058 one-click unsubscribe (body `List-Unsubscribe=One-Click`): suppress the
    address, then (after answering) cancel sends already scheduled at SendGrid for it."""
    try:
        await run_in_threadpool(c.events.unsubscribe, data["email"], "one-click",
                                data.get("touch_id"), data.get("campaign"))
    except Exception:  # noqa: BLE001 - the database is unavailable: nothing recorded
        return error_response(503, "the unsubscribe could not be recorded now; please try again")
    background.add_task(cancel_scheduled, c.app, [data["email"].strip().lower()])
    if "text/html" in request.headers.get("accept", ""):
        return page("Unsubscribed", "<h1>You are unsubscribed</h1><p>You will not get "
                    "marketing email from us again.</p>")
    return JSONResponse({"unsubscribed": True})
