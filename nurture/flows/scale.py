"""Scale-out of the daily cycle on existing engines: Prefect's thread pool, or Dask
(`prefect-dask`) for processes and machines — never a home-made pool.

A worker process gets plain data (the settings as a dict), never an engine or a lease: it
builds its own `App` and send context once per process (`worker_parts`) and checks the run's
fence against the run's row in the database (`RunFence`); the lease and its heartbeat stay
in the flow's process. Threads share the flow's own `App` (`adopt`).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nurture.services.cycle import SendContext
from nurture.services.runs import RunFence
from nurture.settings import Settings
from nurture.store.runs import RunStore
from nurture.wiring import App

SECRET_FIELDS = ("sendgrid_api_key", "secret_key", "api_key", "handoff_webhook_secret")


@dataclass(frozen=True)
class SettingsData:
    """A run's settings as plain, picklable data for worker processes; secrets are not
    shown in reprs (task parameters appear in logs and the Dask dashboard)."""

    values: dict[str, Any] = field(repr=False)

    @property
    def key(self) -> str:
        raw = json.dumps(self.values, sort_keys=True, default=str).encode()
        return hashlib.sha256(raw).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SettingsData({self.key})"


def settings_data(settings: Settings) -> SettingsData:
    return SettingsData(settings.model_dump(mode="json"))


_LOCAL: dict[str, tuple[App, SendContext]] = {}
_LOCK = threading.Lock()


def adopt(app: App, ctx: SendContext) -> SettingsData:
    """Let tasks in this process (threads) use the flow's own `App` and send context."""
    data = settings_data(app.settings)
    with _LOCK:
        _LOCAL[data.key] = (app, ctx)
    return data


def worker_parts(data: SettingsData) -> tuple[App, SendContext]:
    """This process's `App` and send context for `data`, built on first use: one engine
    (connection pool) and one transport per worker process, reused by its chunk tasks."""
    with _LOCK:
        parts = _LOCAL.get(data.key)
        if parts is None:
            app = App(_settings(data.values))
            parts = _LOCAL[data.key] = (app, app.send_context())
        return parts


def _settings(values: dict[str, Any]) -> Settings:
    """The flow's settings again, validated; each field given explicitly wins over this
    process's environment (the SendGrid key is read under its environment name)."""
    values = dict(values)
    values["SENDGRID_API_KEY"] = values.pop("sendgrid_api_key", None)
    return Settings(**values)


def worker_fence(app: App, run_id: int | None, lapse_seconds: float) -> RunFence | None:
    """The run's fence, read from its row; None for a dry run (nothing is written)."""
    return None if run_id is None else RunFence(RunStore(app.engine), run_id, lapse_seconds)


# -- choosing the task runner ----------------------------------------------------------------
def runner_kind(settings: Settings, workers: int) -> str:
    """"sequential", "threads", "dask-local" or "dask-address". One worker works in the
    flow's process unless Dask is asked for by name (NURTURE_TASK_RUNNER=dask or a scheduler
    address): then its one chunk at a time runs on Dask too."""
    if settings.dask_address:
        return "dask-address"
    if settings.task_runner == "dask":
        return "dask-local"
    if workers <= 1:
        return "sequential"
    if settings.task_runner == "threads":
        return "threads"
    if not settings.database_url.startswith("sqlite"):
        return "dask-local"
    return "threads"  # SQLite: one writer at a time, several processes would only queue


def task_runner_for(settings: Settings, workers: int):
    """The Prefect task runner for `workers` chunks at once (None: the flow's default)."""
    kind = runner_kind(settings, workers)
    if kind == "sequential":
        return None
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner  # deferred: Dask is only paid for when used

    _quiet_dask()
    if kind == "dask-address":
        return DaskTaskRunner(address=settings.dask_address)
    # a free port for the dashboard (8787 may be taken); one thread per process: the
    # chunk work is Python (GIL-bound), processes are what spread it over cores
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": ":0"})


def _quiet_dask() -> None:
    """Dask's own start/stop chatter (INFO, and a WARNING for every worker it stops) is
    shown only when Prefect's logging is as chatty (`nurture -v`, PREFECT_LOGGING_LEVEL)."""
    prefect_level = logging.getLogger("prefect").getEffectiveLevel()
    if prefect_level > logging.INFO:
        for name in ("distributed", "prefect.task_runner.dask"):
            logging.getLogger(name).setLevel(logging.ERROR)


class ChunkPool:
    """The task runner a run's chunks go to, opened and closed by the run itself, each in
    the background: a local Dask cluster starts its processes while the flow prepares (the
    lease, provider events, the deliverability guard), and stops while the flow writes its
    reports. `runner()` waits for the start (raising what it raised, e.g. an unreachable
    NURTURE_DASK_ADDRESS); `close()` waits for the stop and must be called in any case."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.workers = workers
        self.kind = runner_kind(settings, workers)
        self._runner = task_runner_for(settings, workers)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="nurture-chunk-pool")
        self._entered = False
        self._started: Future = self._in_background(self._start)
        self._stopped: Future | None = None

    def _in_background(self, fn) -> Future:
        # in the flow run's context (settings, run): Prefect's runner reads it when entered
        return self._thread.submit(contextvars.copy_context().run, fn)

    def _start(self):
        self._runner.__enter__()
        self._entered = True
        if self.kind.startswith("dask"):
            self._runner.client  # noqa: B018 - the cluster (or connection) is made here
        return self._runner

    def runner(self):
        return self._started.result()

    def stop_in_background(self) -> None:
        """Stop the runner once its work is done (submitted work is finished by then)."""
        if self._stopped is None:
            self._stopped = self._in_background(self._stop)

    def _stop(self) -> None:
        if self._entered:  # also when making the cluster failed: what was made is closed
            self._runner.__exit__(None, None, None)

    def close(self) -> None:
        self.stop_in_background()
        try:
            self._stopped.result()
        finally:
            self._thread.shutdown(wait=True)


@contextmanager
def prefect_api_for_workers(kind: str) -> Iterator[None]:
    """Dask workers report their task runs to the flow's Prefect API. A flow run without
    PREFECT_API_URL uses a temporary server that only this process knows of (a worker would
    try to start its own and time out), so its address goes into the settings the tasks
    carry to the workers."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not kind.startswith("dask") or PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if server.server_process is None:  # no temporary server either: nothing to hand on
        yield
        return
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield
