"""Render -> message -> send are kept apart: this module turns rendered content into a
transport-neutral `Message` and, for transports that want one, a MIME document."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid

from nurture.config import Sender
from nurture.rendering import RenderedEmail, one_line


@dataclass(slots=True, frozen=True)
class Message:
    """One email to one lead, tagged so provider events map back to its touch."""

    touch_id: int
    to_email: str
    to_name: str | None
    sender: Sender
    subject: str
    html: str
    text: str
    unsubscribe_url: str
    send_at: datetime
    campaign: str
    step: str
    variant: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def categories(self) -> list[str]:
        return [f"campaign:{self.campaign}", f"step:{self.step}"]

    @property
    def custom_args(self) -> dict[str, str]:
        args = {"touch_id": str(self.touch_id), "campaign": self.campaign, "step": self.step}
        if self.variant:
            args["variant"] = self.variant
        return args | self.tags


def build_message(touch_id: int, lead: dict, sender: Sender, rendered: RenderedEmail,
                  unsubscribe_url: str, send_at: datetime, campaign: str, step: str,
                  variant: str | None) -> Message:
    name = " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p) or None
    return Message(touch_id=touch_id, to_email=lead["email"],
                   to_name=one_line(name) if name else None, sender=sender,
                   subject=rendered.subject, html=rendered.html, text=rendered.text,
                   unsubscribe_url=unsubscribe_url, send_at=send_at, campaign=campaign,
                   step=step, variant=variant)


class _UrlListHeader(UnstructuredHeader):
    """`List-Unsubscribe: <url>` (RFC 2369/8058) is read as is by mail clients: a long URL
    must stay one line, not be folded into RFC 2047 encoded-words like long unstructured
    text (which hides the URL from Gmail, Yahoo and every other client)."""

    def fold(self, *, policy) -> str:
        value = str(self)
        if not value.isascii():
            return super().fold(policy=policy)
        return f"{self.name}: {value}{policy.linesep}"


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", _UrlListHeader)
_POLICY = SMTP.clone(header_factory=_HEADERS)


def to_mime(msg: Message, domain: str = "nurture.local") -> EmailMessage:
    """A standards-compliant multipart/alternative email with RFC 8058 one-click headers."""
    mime = EmailMessage(policy=_POLICY)
    mime["From"] = formataddr((msg.sender.from_name, msg.sender.from_email))
    mime["To"] = formataddr((msg.to_name or "", msg.to_email))
    if msg.sender.reply_to:
        mime["Reply-To"] = msg.sender.reply_to
    mime["Subject"] = msg.subject
    mime["Date"] = format_datetime(msg.send_at)
    mime["Message-ID"] = make_msgid(idstring=f"touch-{msg.touch_id}", domain=domain)
    mime["List-Unsubscribe"] = f"<{msg.unsubscribe_url}>"
    mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mime["X-Nurture-Touch-Id"] = str(msg.touch_id)
    mime["X-Nurture-Campaign"] = msg.campaign
    mime["X-Nurture-Step"] = msg.step + (f"/{msg.variant}" if msg.variant else "")
    mime.set_content(msg.text)
    mime.add_alternative(msg.html, subtype="html")
    return mime
