"""In-memory transport for tests and dry runs: keeps every message it was given."""

from __future__ import annotations

from nurture.adapters.delivery.base import Delivery
from nurture.core.messages import Message


class MemoryTransport:
    name = "memory"
    batch_size = 500

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send_many(self, messages: list[Message]) -> list[Delivery]:
        self.sent.extend(messages)
        return [Delivery(m.touch_id, True, f"mem-{m.touch_id}") for m in messages]

    def reconcile(self, touch_ids: list[int]) -> dict[int, str | None]:
        sent = {m.touch_id for m in self.sent}
        return {tid: (f"mem-{tid}" if tid in sent else None) for tid in touch_ids}

    def close(self) -> None:
        pass
