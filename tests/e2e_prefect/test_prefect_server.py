"""The operator's day on a real Prefect server, as the README's "Running with a Prefect server
and UI" does it: `prefect server start` on a free loopback port (PREFECT_HOME in a temporary
directory, analytics off), a `process` work pool and worker, `prefect --no-prompt deploy
--all` of prefect.yaml from the repository root, a lead store prepared with `nurture db
upgrade` and imports, then every deployment run with `prefect deployment run ... -p ...`.
Checked through the Prefect API: each run Completed, its name, task-run names, artifacts and
the `nurture.lead.*` events. Every process is started in its own process group and stopped
by that group's id, even when the test fails.

The server's scheduler is off so the 15-minute schedule adds no runs of its own; the
schedules themselves (with their time zone) are checked on the deployments.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect_server

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AS_OF = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
LEADS = 4  # lead1 asks for a demo: instant routing hands it to sales


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Background processes started here, each its own process group, stopped by id."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.started.append((name, proc))
        return proc

    def log(self, name: str, tail: int = 40) -> str:
        path = self.logs / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-tail:])

    def stop_all(self) -> None:
        """Newest first (the worker before the server it talks to). A Prefect CLI process
        answers the first SIGTERM/SIGINT by interrupting itself, which a busy worker can
        ignore; a second signal makes it kill itself. Then the whole group is killed: it
        may still hold flow-run subprocesses."""
        for _name, proc in reversed(self.started):
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGINT, 5), (signal.SIGKILL, 5)):
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=wait)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def _env(home: Path, api: str, db: str, outbox: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "NURTURE_", "SENDGRID_"))}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PREFECT_HOME": str(home), "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "NURTURE_DATABASE_URL": db, "NURTURE_OUTBOX_DIR": str(outbox),
        "NURTURE_TRANSPORT": "outbox", "PYTHONUNBUFFERED": "1"})
    return env


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, (f"{' '.join(args)} exited {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def _wait_healthy(api: str, procs: Processes, server: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited {server.returncode}:\n{procs.log('server')}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy at {api} after 90 s:\n{procs.log('server')}")


def _write_inputs(tmp: Path) -> tuple[Path, Path]:
    leads = tmp / "leads.csv"
    created = (AS_OF - timedelta(days=2)).isoformat()
    leads.write_text("email,first_name,company,source,timezone,created_at\n" + "".join(
        f"lead{i}@example.com,Lead{i},Acme {i},website,UTC,{created}\n"
        for i in range(1, LEADS + 1)))
    acts = tmp / "activities.jsonl"
    acts.write_text(json.dumps({"id": "demo-1", "email": "lead1@example.com",
                                "type": "demo_request", "properties": {},
                                "occurred_at": (AS_OF - timedelta(hours=1)).isoformat()})
                    + "\n")
    return leads, acts


def _run_deployment(name: str, params: dict[str, str], env: dict[str, str]) -> uuid.UUID:
    args = [str(BIN / "prefect"), "deployment", "run", name]
    for k, v in params.items():
        args += ["-p", f"{k}={v}"]
    out = _cli(args, env)
    m = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
    assert m, out
    return uuid.UUID(m.group(1))


def _wait_completed(client, run_id: uuid.UUID, procs: Processes, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state and run.state.is_final():
            assert run.state.is_completed(), (
                f"{run.name}: {run.state.type} {run.state.message}\n{procs.log('worker')}")
            return run
        time.sleep(0.5)
    pytest.fail(f"flow run {run_id} not finished after {timeout} s:\n{procs.log('worker')}")


def test_deploy_run_every_deployment_and_read_it_back_through_the_api(tmp_path):
    from prefect.client.orchestration import get_client as _get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    t0 = time.monotonic()
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    db = tmp_path / "nurture.db"
    env = _env(tmp_path / "prefect-home", api, f"sqlite:///{db}", tmp_path / "outbox")
    procs = Processes(tmp_path)
    nurture = str(BIN / "nurture")

    def get_client(sync_client: bool = True):
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api}):
            return _get_client(sync_client=sync_client)
    try:
        server = procs.start("server", [str(BIN / "prefect"), "server", "start", "--host",
                                        "127.0.0.1", "--port", str(port)], env)
        # while the server starts: the store the worker will use, as the README says
        leads, acts = _write_inputs(tmp_path)
        _cli([nurture, "db", "upgrade"], env)
        _cli([nurture, "import-leads", str(leads)], env)
        _cli([nurture, "activities", "import", str(acts)], env)
        _wait_healthy(api, procs, server)
        _cli([str(BIN / "prefect"), "work-pool", "create", "nurture", "--type", "process"],
             env)
        worker = procs.start("worker", [str(BIN / "prefect"), "worker", "start", "--pool",
                                        "nurture"], env)
        out = _cli([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env)
        assert out.count("Deployment '") >= 3, out
        assert worker.poll() is None, procs.log("worker")

        routed = _run_deployment("process-engagement/every-15-minutes",
                                 {"as_of": AS_OF.isoformat()}, env)
        with get_client(sync_client=True) as client:
            run = _wait_completed(client, routed, procs)
            assert run.name.startswith("instant-routing-2026-11-02-0800-")
        accepted = _run_deployment("sales-feedback/on-demand",
                                   {"email": "lead1@example.com", "action": "accept",
                                    "note": "call booked",
                                    "at": (AS_OF + timedelta(hours=1)).isoformat()}, env)
        refused = _run_deployment("sales-feedback/on-demand",
                                  {"email": "lead2@example.com", "action": "reject"}, env)
        with get_client(sync_client=True) as client:
            _wait_completed(client, accepted, procs)
        cycle = _run_deployment("daily-nurture-cycle/daily",
                                {"as_of": (AS_OF + timedelta(hours=2)).isoformat()}, env)
        with get_client(sync_client=True) as client:
            _wait_completed(client, cycle, procs)
        dry = _run_deployment("daily-nurture-cycle/daily",
                              {"as_of": (AS_OF + timedelta(hours=2)).isoformat(),
                               "dry_run": "true"}, env)

        with get_client(sync_client=True) as client:
            _wait_completed(client, dry, procs)
            bad = client.read_flow_run(refused)
            while not (bad.state and bad.state.is_final()):
                time.sleep(0.5)
                bad = client.read_flow_run(refused)
            # lead2 is not with sales: refused, nothing changed, the reason in the message
            assert bad.state.is_failed() and "only a lead with sales" in bad.state.message

            def arts(run_id):
                return {a.key: a for a in client.read_artifacts(
                    flow_run_filter=FlowRunFilter(id={"any_": [run_id]}))}

            # instant routing: the change artifact names the lead and the stages
            md = arts(routed)["instant-routing-changes"].data
            assert "- **#1 lead1@example.com** (inbound-saas): new → **mql**, owner " in md, md

            fb = client.read_flow_run(accepted)
            assert fb.name.startswith("sales-accept-2026-11-02-0900-lead-") and "@" not in \
                fb.name
            assert "mql → **sal**, by sales:prefect" in arts(accepted)[
                "sales-feedback-changes"].data

            run = client.read_flow_run(cycle)
            assert run.name.startswith("nurture-cycle-2026-11-02-1000-")
            tasks = sorted(t.name for t in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [cycle]})))
            # one chunk of the leads still in marketing (lead1 is with sales now)
            assert tasks == ["deliver handoffs to the CRM", "funnel report",
                             f"plan leads 2-{LEADS}", f"send touches 2-{LEADS}"], tasks
            live = arts(cycle)
            assert {"nurture-cycle-summary", "nurture-cycle-report", "nurture-funnel",
                    "nurture-cycle-progress"} <= set(live)
            rows = json.loads(live["nurture-cycle-summary"].data)
            assert list(rows[0]) == ["Campaign", "Sent", "Failed", "Retrying / in doubt",
                                     "MQLs", "Recycled", "SLA expired"]
            assert rows[-1]["Campaign"] == "Total" and rows[-1]["Sent"] == LEADS - 1
            assert len(list((tmp_path / "outbox").rglob("*.eml"))) == LEADS - 1

            dry_run = client.read_flow_run(dry)
            assert "-dry-run-" in dry_run.name
            assert {"nurture-cycle-summary-dry-run", "nurture-cycle-report-dry-run"} <= set(
                arts(dry))
            latest = client.read_artifacts(
                artifact_filter=ArtifactFilter(key={"any_": ["nurture-cycle-summary"]}))
            assert {a.flow_run_id for a in latest} == {cycle}  # the dry run replaced nothing

            deps = {f"{d.name}": d for d in client.read_deployments()}
            assert set(deps) == {"daily", "every-15-minutes", "on-demand"}
            schema = deps["on-demand"].parameter_openapi_schema["properties"]
            assert schema["action"]["enum"] == ["accept", "reject", "opportunity", "won",
                                                "lost"]
            assert "not_ready" in schema["reason"]["description"]
            for name in ("daily", "every-15-minutes"):
                sched = deps[name].schedules[0].schedule
                assert sched.timezone == "Europe/Berlin", (name, sched)

            # events: one per change, the campaign a related resource
            since = datetime.now(UTC) - timedelta(hours=1)
            events: dict[str, object] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not {"nurture.lead.mql",
                                                       "nurture.lead.sal"} <= set(events):
                page = client.read_events(filter=EventFilter(
                    event=EventNameFilter(prefix=["nurture.lead."]),
                    occurred=EventOccurredFilter(since=since)), limit=50)
                events = {e.event: e for e in page.events}
                time.sleep(0.5)
            assert {"nurture.lead.mql", "nurture.lead.sal"} <= set(events), list(events)
            for name in ("nurture.lead.mql", "nurture.lead.sal"):
                ev = events[name]
                assert ev.resource.id == "nurture.lead.1"
                assert [r.id for r in ev.related if r.role == "campaign"] == [
                    "nurture.campaign.inbound-saas"], (name, ev.payload)
                assert ev.payload["campaign"] == "inbound-saas"
            assert events["nurture.lead.mql"].payload["owner"]
            assert events["nurture.lead.sal"].payload["from"] == "mql"
    finally:
        procs.stop_all()
    for _name, proc in procs.started:
        assert proc.poll() is not None
    print(f"prefect server e2e: {time.monotonic() - t0:.1f} s")
    shutil.rmtree(tmp_path / "prefect-home", ignore_errors=True)
