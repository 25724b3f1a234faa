"""The HTTP app (`nurture serve`): SendGrid Event Webhook, one-click unsubscribe, the
activity and sales APIs and a health check. FastAPI on uvicorn, both already installed
with Prefect.

Each route is thin: its dependencies (`deps`) check the key and read the raw body, then it
calls one store/engine function in a worker thread. A refused request changes nothing.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from nurture.adapters.sendgrid_events import WebhookRejected
from nurture.entrypoints.http.deps import Container
from nurture.entrypoints.http.models import error_response
from nurture.entrypoints.http.routers import activities, health, sales, unsubscribe, webhooks
from nurture.settings import Settings
from nurture.wiring import App


async def _rejected(request: Request, exc: WebhookRejected) -> JSONResponse:
    return error_response(exc.status, str(exc))


def create_app(app: App | None = None) -> FastAPI:
    """Build the ASGI app around one `App` (settings, store, config) — built here, once,
    never at import time."""
    app = app or App(Settings())
    api = FastAPI(title="nurture", version="1", docs_url="/docs", redoc_url=None)
    api.state.nurture = app
    api.state.container = Container.build(app)
    api.add_exception_handler(WebhookRejected, _rejected)
    for area in (health, webhooks, unsubscribe, activities, sales):
        api.include_router(area.router)
    return api
