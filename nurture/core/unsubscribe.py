"""Signed, unguessable unsubscribe tokens (HMAC-SHA256 over a compact payload)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


class BadToken(ValueError):
    """The token was not signed with our key (forged, truncated or from another install)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: str, email: str, campaign: str | None = None,
               touch_id: int | None = None) -> str:
    payload = json.dumps({"e": email, "c": campaign, "t": touch_id},
                         separators=(",", ":")).encode()
    sig = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:18]
    return f"{_b64(payload)}.{_b64(sig)}"


def read_token(secret: str, token: str) -> dict:
    """Return {"email", "campaign", "touch_id"} or raise BadToken."""
    try:
        body, sig = token.split(".", 1)
        payload = _unb64(body)
        given = _unb64(sig)
    except (ValueError, TypeError):
        raise BadToken("malformed unsubscribe token") from None
    want = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:18]
    if not hmac.compare_digest(want, given):
        raise BadToken("unsubscribe token signature does not match")
    data = json.loads(payload)
    return {"email": data["e"], "campaign": data.get("c"), "touch_id": data.get("t")}


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"
