"""A run's lease on its work: registered in the store, kept alive by a heartbeat thread.

Fencing, not timeouts: a run is taken over only after its heartbeat stopped for `lapse`
(a live run keeps beating however long it works), and a run that was taken over learns it
at its next beat and stops before its next write or send (`RunFenced`).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Protocol

from nurture.services.ports import RunRegistry, RunStatus


class RunFenced(Exception):
    """This run was taken over by a newer one (its heartbeat had stopped): stop writing."""


class Lease:
    """Use as a context manager around a run's work."""

    def __init__(self, registry: RunRegistry, kind: str, as_of=None,
                 heartbeat_seconds: float = 10.0, lapse_seconds: float = 60.0) -> None:
        self.registry = registry
        self.kind = kind
        self.as_of = as_of
        self.every = max(0.05, heartbeat_seconds)
        self.lapse = timedelta(seconds=lapse_seconds)
        self.run_id: int | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self.run_id = self.registry.register(self.kind, self.as_of)
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.run_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.registry.beat(self.run_id):
                    self.lost = True
                    return
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next tick
                continue

    def check(self) -> None:
        """Raise `RunFenced` when this run has been taken over."""
        if self.lost:
            raise RunFenced(f"run {self.run_id} was taken over by a newer run after its "
                            "heartbeat stopped; it stops here and writes nothing more")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.run_id is not None and not self.lost:
            status = RunStatus.FINISHED if exc is None else RunStatus.FAILED
            detail = None if exc is None else f"{type(exc).__name__}: {exc}"
            self.registry.finish(self.run_id, status, detail)


class RunRows(Protocol):
    """What a worker needs of the run registry: is the run still running?"""

    def is_running(self, run_id: int) -> bool: ...


class RunFence:
    """A run's fence as seen from a worker (a thread, a Dask process, another machine): the
    lease and its heartbeat stay in the flow's process; `check()` reads the run's row, so a
    run taken over — or ended by its flow — is refused here before the next claim or send.
    Duck-types the parts of `Lease` that `send_chunk` uses (`run_id`, `lapse`, `check`)."""

    def __init__(self, rows: RunRows, run_id: int, lapse_seconds: float) -> None:
        self.rows = rows
        self.run_id = run_id
        self.lapse = timedelta(seconds=lapse_seconds)

    def check(self) -> None:
        """Raise `RunFenced` unless the run's row still says running."""
        if not self.rows.is_running(self.run_id):
            raise RunFenced(f"run {self.run_id} is no longer running (taken over, or its "
                            "flow ended): this worker stops and writes nothing more")


__all__ = ["Lease", "RunFence", "RunFenced", "RunRegistry"]
