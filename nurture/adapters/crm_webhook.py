"""MQL handoffs pushed to a CRM webhook (`NURTURE_HANDOFF_WEBHOOK_URL`), signed and never
lost: each handoff stays `pending` in the lead store until the CRM answers 2xx; failures are
retried with exponential backoff ("equal jitter", see `backoff`) at the next delivery run
(every cycle, every instant-routing run, or `nurture handoffs deliver`).

Signature: `X-Nurture-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">` with
`X-Nurture-Timestamp`, keyed by `NURTURE_HANDOFF_WEBHOOK_SECRET` (else the install secret).
Receivers should check it on the raw bytes and reject old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import datetime, timedelta
from typing import Any

import httpx

MAX_BACKOFF = timedelta(hours=6)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def payload(h: dict[str, Any]) -> dict[str, Any]:
    return {"event": "nurture.lead.mql", "handoff_id": h["id"], "lead_id": h["lead_id"],
            "email": h["email"], "first_name": h["first_name"], "last_name": h["last_name"],
            "company": h["company"], "title": h["title"], "source": h["source"],
            "owner": h["owner"], "score": h["score"], "grade": h["grade"], "rule": h["rule"],
            "reason": h["reason"], "created_at": _iso(h["created_at"]),
            "sla_due_at": _iso(h["sla_due_at"]), "recycle_count": h["recycle_count"]}


def backoff(attempts: int) -> timedelta:
    """Wait before the next try: a random time between half and all of 2^attempts minutes
    (1, 2, 4 …; at most 6 hours). "Equal jitter" rather than full jitter on purpose: retries
    of many handoffs are spread out, yet none comes back sooner than half its backoff, so a
    failing CRM is not hit again almost at once."""
    cap = min(MAX_BACKOFF.total_seconds(), 60.0 * 2 ** attempts)
    return timedelta(seconds=random.uniform(cap / 2, cap))


def deliver_pending(sales_store, url: str, secret: str, now: datetime, claimer: int,
                    timeout: float = 10.0, limit: int = 500) -> dict[str, int]:
    """POST every due pending handoff once, each claimed first by `claimer` (a registered
    run) so concurrent deliverers never post the same one; returns counts."""
    due = sales_store.crm_claim(now, claimer, limit)
    out = {"due": len(due), "delivered": 0, "retrying": 0}
    if not due:
        return out
    with httpx.Client(timeout=timeout) as client:
        for h in due:
            body = json.dumps(payload(h), separators=(",", ":")).encode()
            ts = str(int(now.timestamp()))
            headers = {"Content-Type": "application/json", "X-Nurture-Timestamp": ts,
                       "X-Nurture-Signature": sign(secret, ts, body),
                       "X-Nurture-Delivery": f"handoff-{h['id']}"}
            try:
                r = client.post(url, content=body, headers=headers)
                ok, error = 200 <= r.status_code < 300, f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            if ok:
                sales_store.crm_delivered(h["id"], now, claimer)
                out["delivered"] += 1
            else:
                sales_store.crm_retry_later(h["id"], now + backoff(h["crm_attempts"]), error,
                                            claimer)
                out["retrying"] += 1
    return out
