"""The fake's records: a queued fault, and a message it accepted."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Fault:
    status: int | None = None       # answer with this status instead of 202
    delay: float = 0.0              # sleep this long first; without a status the message is
    #                                 still accepted, so a delay past the client's timeout is
    #                                 a send the client cannot tell from a failure
    to: str | None = None           # only for mail to this recipient (None: any)
    path: str | None = None         # only for this endpoint (None: mail send)
    retry_after: float = 0.0        # a 429's `Retry-After`, in seconds


@dataclass
class Recorded:
    message_id: str
    body: dict
    received_at: float
    cancelled_at: float | None = None  # its batch was cancelled (before send_at) then

    @property
    def batch_id(self) -> str | None:
        return self.body.get("batch_id")

    @property
    def send_at(self) -> int | None:
        return self.body["personalizations"][0].get("send_at") or self.body.get("send_at")

    @property
    def state(self) -> str:
        """scheduled (held until send_at) | cancelled (never sent) | sent."""
        if self.cancelled_at is not None:
            return "cancelled"
        return "scheduled" if self.send_at and self.send_at > time.time() else "sent"

    @property
    def custom_args(self) -> dict:
        return self.body["personalizations"][0].get("custom_args", {})

    @property
    def to(self) -> str:
        return self.body["personalizations"][0]["to"][0]["email"]

    def summary(self) -> dict:
        """The message as `GET /__fake__/messages` lists it."""
        return {"message_id": self.message_id, "to": self.to,
                "custom_args": self.custom_args,
                "subject": self.body.get("subject"), "state": self.state,
                "send_at": self.send_at, "batch_id": self.batch_id}
