"""A run's lease on its work: registered in the store, kept alive by a heartbeat thread.

Fencing, not timeouts: a run is taken over only after its heartbeat stopped for `lapse`
(a live run keeps beating however long it works), and a run that was taken over learns it
at its next beat and stops before its next write or send (`RunFenced`).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from nurture.services.ports import RunInfo, RunRegistry, RunStatus


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
    """What a worker needs of the run registry: the run's status and last heartbeat."""

    def runs(self, ids: set[int]) -> dict[int, RunInfo]: ...


class RunFence:
    """A run's fence as seen from a worker (a thread, a Dask process, another machine): the
    lease and its heartbeat stay in the flow's process; `check()` reads the run's row.

    A worker stops when the run is no longer running (taken over, or ended by its flow) —
    and also when the run's heartbeat is older than 3/4 of the lapse: on another machine a
    worker can outlive a dead flow process, and it must stop before a newer run may take
    over (at the full lapse), not after. A live flow beats at least every half lapse, so
    this never stops a healthy run. Duck-types what `send_chunk` uses of `Lease`."""

    def __init__(self, rows: RunRows, run_id: int, lapse_seconds: float) -> None:
        self.rows = rows
        self.run_id = run_id
        self.lapse = timedelta(seconds=lapse_seconds)

    def check(self) -> None:
        """Raise `RunFenced` unless the run's row says running, with a fresh heartbeat."""
        run = self.rows.runs({self.run_id}).get(self.run_id)
        if run is None or run.status != RunStatus.RUNNING:
            raise RunFenced(f"run {self.run_id} is no longer running (taken over, or its "
                            "flow ended): this worker stops and writes nothing more")
        silent = datetime.now(UTC) - run.heartbeat_at
        if silent > self.lapse * 0.75:
            raise RunFenced(f"run {self.run_id}'s heartbeat has been silent for "
                            f"{silent.total_seconds():.0f} s (its flow process stopped?): "
                            "this worker stops before a newer run may take over")


__all__ = ["Lease", "RunFence", "RunFenced", "RunRegistry"]
