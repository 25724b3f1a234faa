"""FastAPI dependencies: the container the routes share, the API-key check, and bodies
read as raw bytes under a size limit (a webhook's signature is checked on exactly those
bytes, before anything is parsed). A dependency refuses by raising `WebhookRejected`,
which the app answers with `{"error": ...}` and the status."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from nurture.adapters.sendgrid_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureVerifier,
    WebhookRejected,
)
from nurture.services.events import WebhookEvents
from nurture.services.ingest import loads_json
from nurture.settings import Settings
from nurture.wiring import App, cancel_scheduled_sends


@dataclass(frozen=True)
class Container:
    """What the routes need, built once per ASGI app (never at import time)."""

    app: App
    settings: Settings
    verifier: SignatureVerifier | None
    events: WebhookEvents

    @classmethod
    def build(cls, app: App) -> Container:
        settings = app.settings
        verifier = (SignatureVerifier(settings.sendgrid_webhook_public_key,
                                      settings.webhook_max_age_seconds)
                    if settings.sendgrid_webhook_public_key else None)
        return cls(app, settings, verifier, app.webhook_events)


def container(request: Request) -> Container:
    return request.app.state.container


ContainerDep = Annotated[Container, Depends(container)]


def require_api_key(request: Request, c: ContainerDep) -> None:
    """Bearer NURTURE_API_KEY, compared in constant time; without a key the API is off."""
    if not c.settings.api_key:
        raise WebhookRejected(503, "the activity API is disabled: set NURTURE_API_KEY")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {c.settings.api_key}".encode()):
        raise WebhookRejected(401, "missing or wrong bearer API key")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) as soon as it is larger than `limit` — declared or sent."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise WebhookRejected(413, f"body larger than {limit} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise WebhookRejected(413, f"body larger than {limit} bytes")
    return body


def body_within(limit: Callable[[Settings], int]) -> Callable[..., Awaitable[bytes]]:
    """A dependency giving the raw body, at most `limit(settings)` bytes."""
    async def raw_body(request: Request, c: ContainerDep) -> bytes:
        return await read_body(request, limit(c.settings))
    return raw_body


def parse_json(raw: bytes) -> Any:
    """The body as JSON (NaN and huge numbers as Python reads them), or a 400 saying why:
    not UTF-8, not JSON, nested too deeply."""
    try:
        return loads_json(raw)
    except ValueError as exc:
        why = ("not UTF-8" if isinstance(exc, UnicodeDecodeError)
               else getattr(exc, "msg", None) or str(exc))
        raise WebhookRejected(400, f"the body is not JSON ({why})") from None


@dataclass(frozen=True)
class SignedBody:
    raw: bytes
    signed: bool


async def signed_body(request: Request, c: ContainerDep) -> SignedBody:
    """The webhook body, verified on its raw bytes: 403 when unsigned, forged or stale —
    unless no key is configured and unsigned batches are allowed (development)."""
    raw = await read_body(request, c.settings.max_body_bytes)
    if c.verifier is not None:
        c.verifier.verify(raw, request.headers.get(SIGNATURE_HEADER),
                          request.headers.get(TIMESTAMP_HEADER))
        return SignedBody(raw, True)
    if c.settings.webhook_allow_unsigned:
        return SignedBody(raw, False)
    raise WebhookRejected(403, "no webhook verification key is configured "
                          "(NURTURE_SENDGRID_WEBHOOK_PUBLIC_KEY); unsigned batches are "
                          "accepted only with NURTURE_WEBHOOK_ALLOW_UNSIGNED=true")


def cancel_scheduled(app: App, emails: list[str]) -> None:
    """After a response: stop scheduled sends to newly suppressed addresses (a failure is
    retried by later runs through `retry_provider_events`)."""
    with contextlib.suppress(Exception):  # retried later; the request is answered
        cancel_scheduled_sends(app, emails)
