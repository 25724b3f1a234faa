"""SendGrid Event Webhook: signature check on the raw bytes and the meaning of each event.

Pure: no database, no HTTP framework. The app verifies and parses here, the lead store
stores and applies what `interpret` decides.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# dropped reasons that mean SendGrid itself suppresses the address: mirror them
SUPPRESSING_DROPS = {"Bounced Address": "bounce", "Spam Reporting Address": "spamreport",
                     "Unsubscribed Address": "unsubscribe", "Invalid": "invalid"}


class WebhookRejected(Exception):
    """The request must be refused (`status`) and nothing stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SignatureVerifier:
    """ECDSA (P-256, SHA-256) over `timestamp + raw body`, via the sendgrid library."""

    def __init__(self, public_key: str, max_age_seconds: int = 600) -> None:
        from sendgrid.helpers.eventwebhook import EventWebhook

        try:
            self._hook = EventWebhook(public_key.strip())
        except Exception as exc:  # noqa: BLE001 - any parse failure is a config error
            raise ValueError(f"the SendGrid webhook verification key is not a valid "
                             f"base64 EC public key: {exc}") from exc
        self.max_age = max_age_seconds

    def verify(self, raw: bytes, signature: str | None, timestamp: str | None,
               now: float | None = None) -> None:
        if not signature or not timestamp:
            raise WebhookRejected(403, f"missing {SIGNATURE_HEADER} / {TIMESTAMP_HEADER}")
        try:
            ts = int(timestamp)
        except ValueError:
            raise WebhookRejected(403, "the signature timestamp is not a number") from None
        if abs((now or time.time()) - ts) > self.max_age:
            raise WebhookRejected(403, f"stale signature: timestamp {ts} is more than "
                                  f"{self.max_age} s away from now (replayed request?)")
        try:
            payload = raw.decode("utf-8")
            ok = self._hook.verify_signature(payload, signature, timestamp)
        except Exception:  # noqa: BLE001 - undecodable body or signature = not signed by us
            ok = False
        if not ok:
            raise WebhookRejected(403, "the Event Webhook signature does not verify")


def parse_batch(raw: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise WebhookRejected(400, "the body is not JSON") from None
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise WebhookRejected(400, "expected a JSON array of event objects")
    for i, e in enumerate(data):
        if not isinstance(e.get("event"), str) or not isinstance(e.get("email"), str):
            raise WebhookRejected(400, f"event {i} lacks `event` or `email`")
    return data


@dataclass(slots=True)
class Effect:
    """What one event means for the lead store."""

    event_id: str
    event: str
    email: str
    occurred_at: datetime
    touch_id: int | None
    message_id: str | None
    delivery_status: str | None = None      # delivered | deferred | bounced | blocked | dropped
    settles_sent: bool = False               # the message certainly reached SendGrid
    suppress: str | None = None              # suppression reason
    activity: str | None = None              # activity type to record
    is_click: bool = False                   # a click: scanner check needs delivery time
    detail: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


def _event_id(e: dict[str, Any]) -> str:
    eid = e.get("sg_event_id")
    if isinstance(eid, str) and eid:
        return eid
    # no id (should not happen): a stable digest of the event dedupes exact repeats
    import hashlib

    return "sha1:" + hashlib.sha1(json.dumps(e, sort_keys=True).encode()).hexdigest()


def interpret(e: dict[str, Any]) -> Effect:
    """Map one SendGrid event to its effect. Our custom_args (touch_id, campaign, step) are
    top-level keys of the event."""
    try:
        touch_id = int(e["touch_id"]) if e.get("touch_id") not in (None, "") else None
    except (TypeError, ValueError):
        touch_id = None
    ts = e.get("timestamp")
    occurred = (datetime.fromtimestamp(int(ts), UTC) if isinstance(ts, int | float)
                or (isinstance(ts, str) and ts.isdigit()) else datetime.now(UTC))
    mid = e.get("sg_message_id")
    mid = mid.split(".", 1)[0] if isinstance(mid, str) and mid else None
    kind = e["event"]
    eff = Effect(_event_id(e), kind, e["email"].strip().lower(), occurred, touch_id, mid)
    props = {k: e[k] for k in ("campaign", "step", "url", "useragent", "reason", "type",
                               "asm_group_id") if k in e}
    eff.properties = props
    if kind == "processed":
        eff.settles_sent = True
    elif kind == "delivered":
        eff.settles_sent, eff.delivery_status = True, "delivered"
    elif kind == "deferred":
        eff.settles_sent, eff.delivery_status = True, "deferred"
        eff.detail = e.get("response")
    elif kind == "bounce":
        eff.settles_sent = True
        if e.get("type") == "blocked":  # a temporary block, not a bad address
            eff.delivery_status, eff.detail = "blocked", e.get("reason")
        else:
            eff.delivery_status, eff.detail = "bounced", e.get("reason")
            eff.suppress = "bounce"
    elif kind == "dropped":
        eff.settles_sent, eff.delivery_status = True, "dropped"
        eff.detail = e.get("reason")
        eff.suppress = SUPPRESSING_DROPS.get(str(e.get("reason")))
    elif kind == "open":
        eff.settles_sent = True
        # Apple MPP and friends pre-fetch pixels: a machine open says nothing about the lead
        eff.activity = "email_machine_open" if e.get("sg_machine_open") else "email_open"
    elif kind == "click":
        eff.settles_sent, eff.is_click, eff.activity = True, True, "email_click"
    elif kind == "spamreport":
        eff.settles_sent, eff.suppress, eff.activity = True, "spamreport", "spam_report"
    elif kind in ("unsubscribe", "group_unsubscribe"):
        eff.settles_sent, eff.suppress, eff.activity = True, "unsubscribe", "unsubscribe"
        eff.detail = kind
    elif kind == "group_resubscribe":
        eff.settles_sent = True
        eff.detail = "group_resubscribe (recorded; suppressions are lifted by hand)"
    return eff
