"""In-memory transport for tests, dry runs and benchmarks: keeps every message it was given
(or, with `keep_messages=False`, only their touch ids — a million-lead benchmark)."""

from __future__ import annotations

from nurture.adapters.delivery.base import Delivery
from nurture.core.messages import Message


class MemoryTransport:
    name = "memory"
    batch_size = 500

    def __init__(self, keep_messages: bool = True) -> None:
        self.sent: list[Message] = []
        self.keep_messages = keep_messages
        self._ids: set[int] = set()

    def send_many(self, messages: list[Message]) -> list[Delivery]:
        if self.keep_messages:
            self.sent.extend(messages)
        else:
            self._ids.update(m.touch_id for m in messages)
        return [Delivery(m.touch_id, True, f"mem-{m.touch_id}") for m in messages]

    def reconcile(self, touch_ids: list[int]) -> dict[int, str | None]:
        sent = {m.touch_id for m in self.sent} if self.keep_messages else self._ids
        return {tid: (f"mem-{tid}" if tid in sent else None) for tid in touch_ids}

    def close(self) -> None:
        pass
