"""Event Webhook events shaped like SendGrid's, for messages the fake accepted.

Each kind is built in steps, in the order SendGrid's own payloads list their keys: the common
fields, the open/click details, the client fields of engagement, the delivery outcome, then
`event` and the message's custom_args as top-level keys.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from nurture.devtools.fake_sendgrid.records import Recorded

EVENT_KINDS = ("processed", "delivered", "deferred", "open", "machine_open", "click",
               "scanner_click", "bounce", "blocked", "dropped", "spamreport", "unsubscribe",
               "group_unsubscribe")
_ENGAGEMENT = ("open", "machine_open", "click", "scanner_click", "group_unsubscribe")


def check_kind(kind: str) -> None:
    """Reject a kind SendGrid never sends, naming the ones it does."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}; one of {EVENT_KINDS}")


def build_event(rec: Recorded, kind: str, base_ts: int, seconds_after: float) -> dict:
    """One event of `kind` for `rec`, delivered at `base_ts`, engaged `seconds_after` it."""
    ev: dict[str, Any] = {
        "email": rec.to, "timestamp": base_ts + int(seconds_after),
        "smtp-id": f"<{rec.message_id}@fake-sendgrid>",
        "category": rec.body.get("categories", []),
        "sg_message_id": f"{rec.message_id}.filter0001.1.0",
        "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode(),
    }
    event = _add_engagement(ev, kind, base_ts)
    event = _add_outcome(ev, kind, base_ts, event)
    ev["event"] = event
    ev.update(rec.custom_args)
    return ev


def _add_engagement(ev: dict, kind: str, base_ts: int) -> str:
    """Open and click details (a machine open is an open, a scanner click a click one second
    after delivery) and the client fields; returns the event name so far."""
    event = kind
    if kind == "machine_open":
        event, ev["sg_machine_open"] = "open", True
    elif kind == "open":
        ev["sg_machine_open"] = False
    if kind in ("click", "scanner_click"):
        event = "click"
        ev["url"] = "https://acme.example/guide"
        if kind == "scanner_click":
            ev["timestamp"] = base_ts + 1
    if kind in _ENGAGEMENT:
        ev["useragent"] = "Mozilla/5.0"
        ev["ip"] = "203.0.113.7"
    return event


def _add_outcome(ev: dict, kind: str, base_ts: int, event: str) -> str:
    """The delivery outcome's fields (bounce, drop, deferral, delivery); returns the event
    name (a `blocked` is reported as a bounce of that type)."""
    if kind in ("bounce", "blocked"):
        event = "bounce"
        ev.update(type=kind, status="5.1.1",
                  reason="550 5.1.1 The email account does not exist")
    elif kind == "dropped":
        ev.update(reason="Bounced Address", status="5.0.0")
    elif kind == "deferred":
        ev.update(response="400 try again later", attempt="1")
    elif kind == "delivered":
        ev["response"] = "250 OK"
        ev["timestamp"] = base_ts
    elif kind == "processed":
        ev["timestamp"] = base_ts
    elif kind == "group_unsubscribe":
        ev["asm_group_id"] = 1
    return event
