"""The run registry: who is working, and whether they still are (heartbeats).

A run registers itself, beats its heartbeat while it works and finishes. A newer run takes
over work (touches left `sending`, events left claimed, CRM deliveries in flight) only from a
run whose heartbeat stopped, and marks it `lost` first — by compare-and-set, so two newer
runs cannot both take over, and the lost run's later writes are refused (fencing).
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, or_, select, update

from nurture.services.ports import RunInfo, RunStatus
from nurture.store import tables as t
from nurture.store.db import write_tx

RUNNING, FINISHED, FAILED, LOST = (RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.FAILED,
                                   RunStatus.LOST)


class RunStore:
    """The SQL run registry (the `RunRegistry` port)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(self, kind: str, as_of: datetime | None = None) -> int:
        now = datetime.now(UTC)
        with write_tx(self.engine) as conn:
            return conn.execute(t.runs.insert().values(
                kind=kind, host=socket.gethostname()[:200], pid=os.getpid(), as_of=as_of,
                started_at=now, heartbeat_at=now, status=RUNNING).returning(t.runs.c.id)
            ).scalar_one()

    def beat(self, run_id: int) -> bool:
        """Heartbeat; False when the run was taken over (it must stop writing)."""
        with write_tx(self.engine) as conn:
            res = conn.execute(update(t.runs).where(t.runs.c.id == run_id,
                                                    t.runs.c.status == RUNNING)
                               .values(heartbeat_at=datetime.now(UTC))
                               .execution_options(preserve_rowcount=True))
            return res.rowcount == 1

    def is_running(self, run_id: int) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(t.runs.c.status).where(t.runs.c.id == run_id)
                                ).scalar() == RUNNING

    def finish(self, run_id: int, status: str = FINISHED, detail: str | None = None) -> None:
        with write_tx(self.engine) as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == run_id,
                                              t.runs.c.status == RUNNING)
                         .values(status=status, finished_at=datetime.now(UTC),
                                 detail=(detail or None) and detail[:2000]))

    def runs(self, ids: set[int]) -> dict[int, RunInfo]:
        if not ids:
            return {}
        R = t.runs
        with self.engine.connect() as conn:
            return {r.id: RunInfo(r.id, r.kind, r.host, r.pid, r.status, r.heartbeat_at)
                    for r in conn.execute(select(R.c.id, R.c.kind, R.c.host, R.c.pid,
                                                 R.c.status, R.c.heartbeat_at)
                                          .where(R.c.id.in_(sorted(ids))))}

    def take_over(self, run_ids: set[int], lapse: timedelta) -> set[int]:
        """Mark runs whose heartbeat stopped `lost`; returns the ids that are not alive
        (lost now or already ended). Alive runs are left alone."""
        if not run_ids:
            return set()
        now = datetime.now(UTC)
        R = t.runs
        with write_tx(self.engine) as conn:
            conn.execute(update(R).where(R.c.id.in_(sorted(run_ids)), R.c.status == RUNNING,
                                         R.c.heartbeat_at < now - lapse)
                         .values(status=LOST, finished_at=now,
                                 detail="taken over: its heartbeat stopped"))
            alive = set(conn.execute(select(R.c.id).where(
                R.c.id.in_(sorted(run_ids)), R.c.status == RUNNING)).scalars())
        return set(run_ids) - alive

    def other_live(self, kind: str, me: int, lapse: timedelta) -> list[RunInfo]:
        """Other runs of this kind that are running with a fresh heartbeat."""
        R = t.runs
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            rows = conn.execute(select(R.c.id, R.c.kind, R.c.host, R.c.pid, R.c.status,
                                       R.c.heartbeat_at)
                                .where(R.c.kind == kind, R.c.id != me, R.c.status == RUNNING,
                                       or_(R.c.heartbeat_at >= now - lapse))).all()
        return [RunInfo(*r) for r in rows]


__all__ = ["FAILED", "FINISHED", "LOST", "RUNNING", "RunInfo", "RunStore"]
