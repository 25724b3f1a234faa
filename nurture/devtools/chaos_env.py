"""What the chaos harness runs against: real processes on loopback and a real database.

Everything here talks to nurture only through its public doors (the `nurture` CLI as
subprocesses, the HTTP app, the fake SendGrid's process), so the harness measures the engine
as users run it — today's and any later version. Each subprocess gets its own process group
and is stopped by its own pid, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, inspect

from nurture.devtools.demo_data import (
    generate_activities,
    generate_leads,
    write_activities_jsonl,
    write_leads_csv,
)
from nurture.services.ingest import import_activities_jsonl, import_leads_csv
from nurture.store.db import make_engine, upgrade
from nurture.store.store import LeadStore

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET = "chaos-harness-secret-key-0123456789"
API_KEY = "chaos-harness-api-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class Service:
    """A long-running subprocess in its own process group (stopped by its pid)."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(list(cmd), env=env, cwd=REPO, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
            except ProcessLookupError:
                pass
        self._fh.close()


def workers_env(workers: int, leads: int) -> dict[str, str]:
    """Cycles with several workers (`NURTURE_WORKERS`: a local Dask cluster on PostgreSQL,
    threads on SQLite) over chunks small enough that each worker gets several."""
    if workers <= 1:
        return {}
    return {"NURTURE_WORKERS": str(workers),
            "NURTURE_CHUNK_SIZE": str(max(10, -(-leads // (3 * workers))))}


def base_env(prefect_api: str | None) -> dict[str, str]:
    """The environment every nurture subprocess gets: our settings, never the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NURTURE_", "SENDGRID_", "PREFECT_"))}
    env.update({
        "PYTHONPATH": str(REPO), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_LOGGING_EXTRA_LOGGERS": "",
        "NURTURE_CAMPAIGNS_DIR": str(REPO / "campaigns"),
        "NURTURE_TEMPLATES_DIR": str(REPO / "templates"),
        "NURTURE_SECRET_KEY": SECRET, "NURTURE_API_KEY": API_KEY,
        # short fencing for engines that support it (ignored by those that do not)
        "NURTURE_RUN_HEARTBEAT_SECONDS": "0.5", "NURTURE_RUN_LAPSE_SECONDS": "2",
    })
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    return env


def start_prefect(work: Path) -> tuple[Service, str]:
    """One Prefect server for the whole harness run (a `nurture cycle` without one starts a
    temporary server of its own, ~6 s per process)."""
    home = work / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = base_env(None) | {"PREFECT_HOME": str(home), "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
                            "PREFECT_API_DATABASE_CONNECTION_URL":
                                f"sqlite+aiosqlite:///{home / 'prefect.db'}"}
    svc = Service([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                   "--port", str(port), "--no-services"], env, work / "prefect-server.log")
    api = f"http://127.0.0.1:{port}/api"
    wait_http(f"{api}/health", 120, svc.proc)
    return svc, api


class FakeSendGridProcess:
    """`nurture fake-sendgrid` in its own process, logging what it accepted to a file."""

    def __init__(self, work: Path, name: str, latency_ms: float, fault_rate: float,
                 fault_delay: float, seed: int) -> None:
        self.port = free_port()
        self.log_path = work / f"{name}.sent.jsonl"
        self.log_path.touch()
        self.svc = Service([str(BIN / "nurture"), "fake-sendgrid", "--port", str(self.port),
                            "--api-key", "SG.chaos", "--latency-ms", str(latency_ms),
                            "--log", str(self.log_path), "--fault-rate", str(fault_rate),
                            "--fault-delay", str(fault_delay), "--fault-seed", str(seed)],
                           base_env(None), work / f"{name}.fake.log")
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.url}/__fake__/public-key", 60, self.svc.proc)
        self.public_key = httpx.get(f"{self.url}/__fake__/public-key").json()["public_key"]

    def env(self) -> dict[str, str]:
        return {"NURTURE_TRANSPORT": "sendgrid", "NURTURE_SENDGRID_HOST": self.url,
                "SENDGRID_API_KEY": "SG.chaos"}

    def clear(self) -> int:
        """Forget accepted messages (events are posted for this trial's only); returns the
        log offset where this trial's lines start."""
        httpx.delete(f"{self.url}/__fake__/messages", timeout=30)
        return self.log_path.stat().st_size

    def post_events(self, webhook_url: str, kinds: list[str]) -> dict:
        r = httpx.post(f"{self.url}/__fake__/events", json={"url": webhook_url, "kinds": kinds},
                       timeout=120)
        return r.json()

    def stop(self) -> None:
        self.svc.stop()


class ServeProcess:
    """`nurture serve` on loopback for one database (webhook, sales feedback)."""

    def __init__(self, work: Path, name: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.svc = Service([str(BIN / "nurture"), "serve", "--host", "127.0.0.1", "--port",
                            str(self.port), "--log-level", "warning"], env,
                           work / f"{name}.serve.log")
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.url}/health", 60, self.svc.proc)

    def stop(self) -> None:
        self.svc.stop()


class CrmReceiver:
    """A CRM on loopback: answers 200 to every POST and logs it (handoff id, delivery id)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        lock = threading.Lock()
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                with lock:
                    posts.append({"delivery": self.headers.get("X-Nurture-Delivery"),
                                  "handoff_id": body.get("handoff_id"),
                                  "lead_id": body.get("lead_id"), "email": body.get("email"),
                                  "time": time.time()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/crm/handoffs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = 300
            ) -> subprocess.CompletedProcess:
    """A `nurture` command to completion, in its own process group."""
    return subprocess.run([str(BIN / "nurture"), *args], env=env, cwd=REPO, timeout=timeout,
                          capture_output=True, text=True, start_new_session=True)


def spawn(cmd: Sequence[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(list(cmd), env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    """kill -9 the whole process group of one process we started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


# -- the database: one per lane, restored to a snapshot before every trial -----------------
class LaneDB:
    """A SQLite file or a fresh PostgreSQL schema, with named snapshots restored in place
    (in place so that a running `nurture serve` keeps working across trials)."""

    def __init__(self, backend: str, work: Path, name: str, pg_url: str = PG_DEFAULT) -> None:
        self.backend, self.work, self.name = backend, work, name
        if backend == "sqlite":
            self.url = f"sqlite:///{work / (name + '.db')}"
            self._admin = None
        else:
            self.schema = f"chaos_{name}_{uuid.uuid4().hex[:8]}"
            self._admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
            with self._admin.connect() as c:
                c.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
            sep = "&" if "?" in pg_url else "?"
            self.url = f"{pg_url}{sep}options=-csearch_path%3D{self.schema}"

        self.engine = make_engine(self.url)

    def upgrade(self) -> None:
        upgrade(self.engine)

    def _tables(self, conn) -> list[str]:
        return [t for t in inspect(conn).get_table_names()
                if t != "alembic_version" and not t.startswith("sqlite_")]

    def snapshot(self, tag: str) -> None:
        if self.backend == "sqlite":
            dest = self.work / f"{self.name}.{tag}.snap.db"
            dest.unlink(missing_ok=True)
            raw = self.engine.raw_connection()  # VACUUM runs outside any transaction
            try:
                raw.cursor().execute(f"VACUUM INTO '{dest}'")
            finally:
                raw.close()
            return
        snap = f"{self.schema}_{tag}"
        with self._admin.connect() as c:
            c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{snap}" CASCADE')
            c.exec_driver_sql(f'CREATE SCHEMA "{snap}"')
            with self.engine.connect() as ec:
                tables = self._tables(ec)
            for t in tables:
                c.exec_driver_sql(f'CREATE TABLE "{snap}"."{t}" AS '
                                  f'SELECT * FROM "{self.schema}"."{t}"')

    def restore(self, tag: str) -> None:
        if self.backend == "sqlite":
            src = self.work / f"{self.name}.{tag}.snap.db"
            raw = self.engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("PRAGMA foreign_keys=OFF")
                cur.execute(f"ATTACH DATABASE '{src}' AS snap")
                names = [r[0] for r in cur.execute(
                    "SELECT name FROM main.sqlite_master WHERE type='table' AND name NOT LIKE "
                    "'sqlite_%' AND name != 'alembic_version'").fetchall()]
                cur.execute("BEGIN IMMEDIATE")
                for t in names:
                    cur.execute(f'DELETE FROM main."{t}"')
                    cur.execute(f'INSERT INTO main."{t}" SELECT * FROM snap."{t}"')
                cur.execute("COMMIT")
                cur.execute("DETACH DATABASE snap")
                cur.execute("PRAGMA foreign_keys=ON")
            finally:
                raw.close()
            return
        snap, s = f"{self.schema}_{tag}", self.schema
        with self.engine.connect() as ec:
            tables = self._tables(ec)
        with self.engine.begin() as c:  # one transaction: SET LOCAL lasts until its end
            c.exec_driver_sql("SET LOCAL session_replication_role = replica")
            c.exec_driver_sql("TRUNCATE " + ", ".join(f'"{s}"."{t}"' for t in tables))
            for t in tables:
                c.exec_driver_sql(f'INSERT INTO "{s}"."{t}" SELECT * FROM "{snap}"."{t}"')
                seq = c.exec_driver_sql(
                    "SELECT pg_get_serial_sequence(%s, 'id') FROM information_schema.columns "
                    "WHERE table_schema=%s AND table_name=%s AND column_name='id'",
                    (f'"{s}"."{t}"', s, t)).scalar()
                if seq:
                    c.exec_driver_sql(f'SELECT setval(\'{seq}\', COALESCE((SELECT max(id) '
                                      f'FROM "{s}"."{t}"), 0) + 1, false)')

    def drop(self) -> None:
        self.engine.dispose()
        if self._admin is not None:
            with self._admin.connect() as c:
                rows = c.exec_driver_sql(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                    (self.schema + "%",)).scalars().all()
                for name in rows:
                    c.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
            self._admin.dispose()


def seed(db: LaneDB, work: Path, leads: int, seed_value: int, start: datetime) -> dict:
    """Synthetic leads and 45 days of activity before `start` (the demo generator), imported
    through the real importers."""
    data = work / "seed-data"
    if not (data / "leads.csv").exists():
        data.mkdir(parents=True, exist_ok=True)
        rows = list(generate_leads(leads, seed=seed_value, start=start))
        write_leads_csv(data / "leads.csv", rows)
        write_activities_jsonl(data / "activities.jsonl",
                               generate_activities(rows, start, 0, seed=seed_value))
    store = LeadStore(db.engine)
    lr = import_leads_csv(store, data / "leads.csv")
    ar = import_activities_jsonl(store, data / "activities.jsonl")
    return {"leads": lr.inserted, "activities": ar.inserted}


def hand_raiser_activities(path: Path, emails: Sequence[str], at: datetime, tag: str) -> int:
    """New activity for some leads: demo requests and pricing visits (instant routing's
    work), written as an activities JSONL file."""
    kinds = ["demo_request", "pricing_page_view", "pricing_page_view", "webinar_attended"]
    with open(path, "w", encoding="utf-8") as fh:
        n = 0
        for i, email in enumerate(emails):
            for j, kind in enumerate(kinds if i % 2 == 0 else kinds[1:]):
                fh.write(json.dumps({"id": f"chaos-{tag}-{i}-{j}", "email": email, "type": kind,
                                     "occurred_at": (at - timedelta(minutes=30 - j)).isoformat(),
                                     "properties": {}}) + "\n")
                n += 1
    return n


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
