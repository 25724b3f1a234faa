"""The chaos harness, short: a few kill -9 trials per transport and backend and one concurrent
round per backend, run as users run it (`python benchmarks/chaos.py --json`, a subprocess that
starts its own Prefect server, fake SendGrid, `nurture serve` and CRM receiver).

Every count that must be 0 has its own test. Against the engine before issue 8's fixes the
harness found lost and unsettled SendGrid touches (all 354 of a killed chunk stuck
`sending`) and duplicate CRM posts (two deliverers posting every handoff).
`test_the_harness_ran` guards against a harness that silently did nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRIALS, ROUNDS = 2, 1

PG_URL = os.environ.get("NURTURE_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("NURTURE_REQUIRE_POSTGRES") == "1"

pytestmark = pytest.mark.chaos


def pg_skip_reason() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"),
                             connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"


def _harness(tmp_path_factory, *extra: str) -> dict:
    reason = pg_skip_reason()
    if reason and REQUIRE_PG:
        pytest.fail(f"PostgreSQL is required (NURTURE_REQUIRE_POSTGRES=1): {reason}")
    backend = "sqlite" if reason else "both"
    cmd = [sys.executable, str(REPO / "benchmarks" / "chaos.py"), "--backend", backend,
           "--leads", "150", "--json", "--pg-url", PG_URL,
           "--keep", str(tmp_path_factory.mktemp("chaos") / "work"), *extra]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1), f"harness failed ({r.returncode}):\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout)
    out["returncode"] = r.returncode
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    return _harness(tmp_path_factory, "--trials", str(TRIALS), "--rounds", str(ROUNDS))


@pytest.fixture(scope="module")
def workers_report(tmp_path_factory) -> dict:
    """Cycles on two workers (Dask processes on PostgreSQL, threads on SQLite): one kill
    trial per backend (outbox) and one concurrent round, where two such cycles race."""
    return _harness(tmp_path_factory, "--workers", "2", "--trials", "1", "--rounds", "1",
                    "--transport", "outbox")


def _kills(report: dict) -> list[dict]:
    return [r for r in report["results"] if r["kind"] == "kill"]


def _rounds(report: dict) -> list[dict]:
    return [r for r in report["results"] if r["kind"] == "round"]


def test_the_harness_ran(report):
    assert report["errors"] == []
    kills = _kills(report)
    assert {r["transport"] for r in kills} == {"outbox", "sendgrid"}
    for lane in kills:
        assert lane["runs"] == TRIALS
        assert lane["control_deliveries"] > 50, lane  # the control day sends real mail
        assert lane["counts"]["delivered"] > 0
    assert [r["runs"] for r in _rounds(report)] == [ROUNDS] * len(_rounds(report))
    assert all(r["counts"]["delivered"] > 0 for r in _rounds(report))
    assert report["returncode"] == (1 if report["not_zero"] else 0)


@pytest.mark.parametrize("count", ["duplicates", "lost", "unwanted", "unsettled",
                                   "rerun_failed"])
def test_kill_trials_count_zero(report, count):
    assert {f"{r['backend']}/{r['transport']}": r["counts"].get(count, 0)
            for r in _kills(report)} == {f"{r['backend']}/{r['transport']}": 0
                                         for r in _kills(report)}


@pytest.mark.parametrize("count", ["duplicates", "lost", "unsettled", "dup_open_handoffs",
                                   "dup_handoffs", "dup_mql_transitions", "dup_crm_posts",
                                   "crm_missing", "impossible_states", "rerun_failed",
                                   "hung"])
def test_concurrent_rounds_count_zero(report, count):
    assert {r["backend"]: r["counts"].get(count, 0) for r in _rounds(report)} == {
        r["backend"]: 0 for r in _rounds(report)}


def test_the_harness_ran_with_two_workers(workers_report):
    assert workers_report["errors"] == []
    assert workers_report["workers"] == 2
    kills = _kills(workers_report)
    assert kills and all(r["runs"] == 1 and r["control_deliveries"] > 50 for r in kills)
    assert [r["runs"] for r in _rounds(workers_report)] == [1] * len(_rounds(workers_report))
    assert all(r["counts"]["delivered"] > 0 for r in _rounds(workers_report))


@pytest.mark.parametrize("count", ["duplicates", "lost", "unwanted", "unsettled",
                                   "rerun_failed"])
def test_kill_trials_with_two_workers_count_zero(workers_report, count):
    assert {r["backend"]: r["counts"].get(count, 0) for r in _kills(workers_report)} == {
        r["backend"]: 0 for r in _kills(workers_report)}


@pytest.mark.parametrize("count", ["duplicates", "lost", "unsettled", "dup_open_handoffs",
                                   "dup_handoffs", "dup_mql_transitions", "dup_crm_posts",
                                   "crm_missing", "impossible_states", "rerun_failed",
                                   "hung"])
def test_concurrent_rounds_with_two_workers_count_zero(workers_report, count):
    assert {r["backend"]: r["counts"].get(count, 0) for r in _rounds(workers_report)} == {
        r["backend"]: 0 for r in _rounds(workers_report)}
