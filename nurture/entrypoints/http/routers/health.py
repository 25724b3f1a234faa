"""`GET /health`: is the database migrated, which transport, is the webhook signed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from nurture.entrypoints.http.deps import ContainerDep
from nurture.entrypoints.http.models import Health
from nurture.store.db import is_migrated

router = APIRouter()


@router.get("/health", response_model=Health)
def health(c: ContainerDep) -> dict[str, Any]:
    settings = c.settings
    return {"status": "ok", "database": "migrated" if is_migrated(c.app.engine)
            else "needs `nurture db upgrade`", "transport": settings.transport,
            "webhook_signing": "verified" if c.verifier else (
                "UNSIGNED ACCEPTED (development)" if settings.webhook_allow_unsigned
                else "not configured: webhook refused")}
