"""`nurture test-send`: a step as a real email to a marketer's own inbox, before launch.

It renders exactly as the send phase does (the same `Renderer`, `build_message` and the
configured transport) but it is not a touch: nothing is written to the ledger, so it is
never counted in reports and never stops a real lead from getting the step. Safety rails:
the subject starts with `[TEST]`; only addresses listed under `test_recipients:` in
lifecycle.yaml (exact addresses or `*@domain`) may receive one; the unsubscribe link is
inert (it names no lead); provider events cannot match a touch (`touch_id` is `test-send`);
with the outbox transport the files go to `<outbox>/test-sends/`, apart from real mail.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nurture.core.config import Campaign, Config
from nurture.core.messages import Message, build_message
from nurture.core.rendering import Renderer, RenderError
from nurture.core.unsubscribe import unsubscribe_url
from nurture.services.ports import Delivery, Transport

PREFIX = "[TEST] "
TEST_TOUCH_TAG = "test-send"


class TestSendRefused(Exception):
    """Bad request: unknown step/variant, recipient not allowed, render error."""


def allowed(address: str, test_recipients: list[str]) -> bool:
    address = address.strip().casefold()
    for entry in test_recipients:
        entry = entry.strip().casefold()
        if entry.startswith("*@"):
            if address.endswith(entry[1:]) and address.count("@") == 1:
                return True
        elif address == entry:
            return True
    return False


@dataclass
class Sent:
    to: str
    step: str
    variant: str | None
    subject: str
    delivery: Delivery


def _emails(campaign: Campaign, step_id: str | None, variant: str | None):
    found = False
    for track in campaign.tracks:
        for step in track.steps:
            if step_id is not None and step.id != step_id:
                continue
            found = True
            ids = [v.id for v in step.variants] if step.variants else [None]
            if variant is not None:
                if variant not in ids:
                    raise TestSendRefused(f"step {step.id!r} has no variant {variant!r}; it has "
                                          f"{', '.join(str(i) for i in ids)}")
                ids = [variant]
            for v in ids:
                yield track, step, v
    if not found:
        raise TestSendRefused(f"campaign {campaign.name!r} has no step {step_id!r}")


def build_test_messages(config: Config, renderer: Renderer, campaign_name: str,
                        step_id: str | None, variant: str | None, to: list[str],
                        lead: dict[str, Any], public_url: str,
                        now: datetime | None = None) -> list[Message]:
    """Render and address every requested email; raises `TestSendRefused` before anything
    is sent when a recipient is not allowed or a render fails."""
    campaign = config.campaign(campaign_name)
    if campaign is None:
        raise TestSendRefused(f"unknown campaign {campaign_name!r}; the config has "
                              f"{', '.join(c.name for c in config.campaigns)}")
    allow = list(config.lifecycle.test_recipients)
    if not allow:
        raise TestSendRefused("no test_recipients in lifecycle.yaml: list the addresses (or "
                              "*@yourdomain) that may receive test sends")
    refused = [a for a in to if not allowed(a, allow)]
    if refused:
        raise TestSendRefused(f"not in test_recipients: {', '.join(refused)} (lifecycle.yaml "
                              f"allows {', '.join(allow)})")
    now = now or datetime.now(UTC)
    url = unsubscribe_url(public_url, "TEST-SEND")  # inert: names no lead
    base = int(time.time() * 1000) * 1000
    messages: list[Message] = []
    for track, step, v in _emails(campaign, step_id, variant):
        try:
            rendered = renderer.render(campaign, track, step, v, lead, url)
        except RenderError as exc:
            raise TestSendRefused(str(exc)) from None
        for address in to:
            msg = build_message(base + len(messages), lead | {"email": address.strip()},
                                campaign.sender, rendered, url, now, campaign.name, step.id, v)
            subject = rendered.subject if rendered.subject.startswith(PREFIX) else \
                PREFIX + rendered.subject
            messages.append(Message(
                touch_id=msg.touch_id, to_email=msg.to_email, to_name=msg.to_name,
                sender=msg.sender, subject=subject, html=msg.html, text=msg.text,
                unsubscribe_url=url, send_at=now, campaign=msg.campaign, step=msg.step,
                variant=msg.variant, tags={"touch_id": TEST_TOUCH_TAG, "test_send": "true"}))
    return messages


def send(transport: Transport, messages: list[Message]) -> list[Sent]:
    """Hand the messages to the transport; nothing is recorded anywhere else."""
    deliveries = {d.touch_id: d for d in transport.send_many(messages)}
    return [Sent(m.to_email, m.step, m.variant, m.subject, deliveries[m.touch_id])
            for m in messages]
