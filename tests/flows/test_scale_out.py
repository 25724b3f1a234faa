"""The daily flow with several workers, under the real ephemeral Prefect server: chunks run at
once on Prefect's thread pool (SQLite) or on Dask processes (PostgreSQL: a local cluster, or
an existing scheduler at NURTURE_DASK_ADDRESS), and deliver exactly what one worker delivers:
the same touches, none twice, one Prefect task per chunk of leads."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.flows

AS_OF = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
N_LEADS = 23
CHUNK = 4


def _seed(url: str, tmp_path, monkeypatch, campaigns_dir, templates_dir, tag: str):
    from nurture.store.db import make_engine, upgrade
    from nurture.store.store import LeadStore

    outbox = tmp_path / f"outbox-{tag}"
    for key, value in {"NURTURE_DATABASE_URL": url, "NURTURE_TRANSPORT": "outbox",
                       "NURTURE_OUTBOX_DIR": str(outbox),
                       "NURTURE_CAMPAIGNS_DIR": str(campaigns_dir),
                       "NURTURE_TEMPLATES_DIR": str(templates_dir)}.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(url)
    upgrade(engine)
    LeadStore(engine).upsert_leads([
        {"email": f"lead{i}@example.com", "first_name": f"Lead{i}", "source": "website",
         "timezone": "UTC", "created_at": AS_OF - timedelta(days=2 + i % 5),
         "job_title": "VP Engineering" if i % 3 == 0 else "Engineer"}
        for i in range(N_LEADS)])
    return engine, outbox


def _sent(engine) -> list[tuple]:
    """Every touch handed to the transport, by lead email: (email, campaign, step, round)."""
    from sqlalchemy import select

    from nurture.store import tables as t

    with engine.connect() as conn:
        rows = conn.execute(select(t.leads.c.email, t.touches.c.campaign, t.touches.c.step,
                                   t.touches.c.round)
                            .join(t.leads, t.leads.c.id == t.touches.c.lead_id)
                            .where(t.touches.c.sent_at.is_not(None))).all()
    return sorted(tuple(r) for r in rows)


def _cycle(workers: int, **params):
    from nurture.flows.daily_cycle import daily_nurture_cycle

    state = daily_nurture_cycle(as_of=AS_OF.isoformat(), chunk_size=CHUNK, workers=workers,
                                return_state=True, **params)
    assert state.is_completed(), state.message
    return state.result(), state.state_details.flow_run_id


def _chunk_task_names(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))
    return [t.name for t in tasks if t.name.startswith("plan and send leads ")]


@pytest.fixture
def expected(tmp_path, monkeypatch, campaigns_dir, templates_dir, prefect_server):
    """What one worker delivers on the same data (SQLite, chunks one after another)."""
    engine, outbox = _seed(f"sqlite:///{tmp_path / 'one.db'}", tmp_path, monkeypatch,
                           campaigns_dir, templates_dir, "one")
    summary, _ = _cycle(1)
    sent = _sent(engine)
    engine.dispose()
    assert summary["touches_sent"] == len(sent) > N_LEADS // 2
    return summary, sent


def _check_same(engine, outbox, summary, flow_run_id, expected) -> None:
    want_summary, want = expected
    got = _sent(engine)
    assert got == want  # the same (lead, campaign, step, round) touches ...
    assert not [k for k, n in Counter(got).items() if n > 1]  # ... none twice
    assert len(list(outbox.rglob("*.eml"))) == len(want)  # one email each
    for key in ("leads_scored", "touches_sent", "mqls", "recycled"):
        assert summary[key] == want_summary[key], key
    # one task per chunk of leads, never per lead
    assert len(_chunk_task_names(flow_run_id)) == math.ceil(N_LEADS / CHUNK)


def test_two_threads_on_sqlite_deliver_what_one_worker_delivers(
        expected, tmp_path, monkeypatch, campaigns_dir, templates_dir):
    engine, outbox = _seed(f"sqlite:///{tmp_path / 'two.db'}", tmp_path, monkeypatch,
                           campaigns_dir, templates_dir, "two")
    summary, run_id = _cycle(2)
    _check_same(engine, outbox, summary, run_id, expected)
    # the same day again: nothing new, nothing twice
    again, _ = _cycle(2)
    assert again["touches_sent"] == 0
    assert _sent(engine) == expected[1]
    engine.dispose()


@pytest.mark.postgres
def test_local_dask_cluster_on_postgresql_delivers_what_one_worker_delivers(
        expected, pg_url, tmp_path, monkeypatch, campaigns_dir, templates_dir):
    from nurture.flows.scale import runner_kind
    from nurture.settings import Settings

    engine, outbox = _seed(pg_url, tmp_path, monkeypatch, campaigns_dir, templates_dir, "dask")
    assert runner_kind(Settings(), 2) == "dask-local"
    summary, run_id = _cycle(2)
    _check_same(engine, outbox, summary, run_id, expected)
    engine.dispose()


@pytest.mark.postgres
def test_an_existing_dask_scheduler_from_nurture_dask_address(
        expected, pg_url, tmp_path, monkeypatch, campaigns_dir, templates_dir):
    from distributed import Client, LocalCluster

    engine, outbox = _seed(pg_url, tmp_path, monkeypatch, campaigns_dir, templates_dir, "addr")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        monkeypatch.setenv("NURTURE_DASK_ADDRESS", cluster.scheduler_address)
        summary, run_id = _cycle(2)
        _check_same(engine, outbox, summary, run_id, expected)
        # the work ran in the cluster's worker processes: they built their own App
        with Client(cluster) as client:
            apps = client.run(_apps_built)
        assert len(apps) == 2 and sum(apps.values()) >= 1, apps
    engine.dispose()


def _apps_built() -> int:
    from nurture.flows import scale

    return len(scale._LOCAL)


def test_nurture_cycle_workers_2(expected, tmp_path, monkeypatch, campaigns_dir,
                                 templates_dir, capsys):
    from nurture.entrypoints.cli.main import main

    engine, outbox = _seed(f"sqlite:///{tmp_path / 'cli.db'}", tmp_path, monkeypatch,
                           campaigns_dir, templates_dir, "cli")
    capsys.readouterr()
    assert main(["cycle", "--as-of", AS_OF.isoformat(), "--chunk-size", str(CHUNK),
                 "--workers", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["touches_sent"] == expected[0]["touches_sent"]
    assert _sent(engine) == expected[1]
    assert len(list(outbox.rglob("*.eml"))) == len(expected[1])
    engine.dispose()
    assert main(["cycle", "--workers", "0"]) == 1
    assert "--workers 0 is out of range" in capsys.readouterr().err


def test_cycle_help_explains_workers(capsys):
    from nurture.entrypoints.cli.main import main

    with pytest.raises(SystemExit):
        main(["cycle", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--workers N" in out and "NURTURE_DASK_ADDRESS" in out


def test_dask_with_sqlite_is_refused_clearly():
    from pydantic import ValidationError

    from nurture.settings import Settings

    with pytest.raises(ValidationError, match="SQLite takes one writer at a time"):
        Settings(database_url="sqlite:///x.db", dask_address="tcp://127.0.0.1:8786")
    with pytest.raises(ValidationError, match="Dask scheduler address"):
        Settings(database_url="postgresql+psycopg://h/db", dask_address="tcp://nohostport")
