"""An asyncio event loop on a dedicated daemon thread, for sync callers of async I/O.

The Transport port is synchronous (`send_many`), but hundreds of requests in flight over
pooled keep-alive connections want one event loop that outlives each call: the connections
(and the rate-limit state) are owned by this loop and reused by every call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


class LoopThread:
    """`run(coro)` runs a coroutine on the loop and waits for its result."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from its own loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        """Stop the loop and join the thread (run any async cleanup with `run` first)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
