"""Honouring SendGrid's rate-limit headers before the limit is hit, and 429s after.

Every answer carries `X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch seconds when the
window refills). With many requests in flight an answer's `Remaining` is already stale by
the requests sent since, so the gate keeps a conservative local count: the latest
`Remaining` minus what is still in flight, decremented as each request leaves. At zero,
senders wait for the reset instead of collecting 429s. A 429 pauses every sender until its
`Retry-After` (or the reset) has passed, not just the one that got it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping


class RateGate:
    """Shared by all requests of one transport; used on its event loop only."""

    def __init__(self, max_wait: float = 30.0, clock=time.time) -> None:
        self.max_wait = max_wait
        self.clock = clock
        self.remaining: int | None = None  # None: no limit known
        self.reset_at = 0.0
        self.paused_until = 0.0
        self.in_flight = 0
        self.waits = 0          # times a request waited at the gate (for reports)
        self.throttled = 0      # 429s seen

    async def enter(self) -> None:
        """Wait while a 429 pause runs or the window's budget is spent; then take one."""
        while True:
            now = self.clock()
            wait = self.paused_until - now
            if self.remaining is not None and self.remaining <= 0:
                if now >= self.reset_at:
                    self.remaining = None  # the window refilled; the next answer tells
                else:
                    wait = max(wait, self.reset_at - now)
            if wait <= 0:
                break
            self.waits += 1
            await asyncio.sleep(min(wait, self.max_wait))
        if self.remaining is not None:
            self.remaining -= 1
        self.in_flight += 1

    def leave(self, headers: Mapping[str, str] | None) -> None:
        """One request settled: learn from its rate-limit headers, if any."""
        self.in_flight -= 1
        if not headers:
            return
        remaining, reset = headers.get("X-RateLimit-Remaining"), headers.get(
            "X-RateLimit-Reset")
        if remaining is None or not remaining.isdigit() or not reset or not reset.isdigit():
            return
        reset_at, left = float(reset), int(remaining) - self.in_flight
        if reset_at > self.reset_at or self.remaining is None:
            self.reset_at, self.remaining = reset_at, left  # a new window
        else:
            self.remaining = min(self.remaining, left)

    def pause(self, seconds: float) -> None:
        """A 429: every sender waits `seconds` (capped at `max_wait`)."""
        self.throttled += 1
        until = self.clock() + min(max(seconds, 0.0), self.max_wait)
        self.paused_until = max(self.paused_until, until)
