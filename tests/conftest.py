"""Shared fixtures: real SQLite files and a real PostgreSQL schema per test, the repo's own
campaigns and templates, and (for flow tests) one ephemeral Prefect server per session."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PG_URL = os.environ.get("NURTURE_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("NURTURE_REQUIRE_POSTGRES") == "1"

# Prefect must not phone home or print telemetry errors during tests.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _pg_available() -> str | None:
    """None when reachable, else the reason."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return "psycopg is not installed"
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"


_PG_REASON: str | None | bool = False


def pg_skip_reason() -> str | None:
    global _PG_REASON
    if _PG_REASON is False:
        _PG_REASON = _pg_available()
    return _PG_REASON  # type: ignore[return-value]


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL schema for one test; dropped afterwards."""
    reason = pg_skip_reason()
    if reason:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (NURTURE_REQUIRE_POSTGRES=1) but not "
                        f"reachable at {PG_URL}: {reason}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({reason}); set "
                    "NURTURE_TEST_POSTGRES_URL to run these tests")
    import psycopg

    schema = f"nurture_test_{uuid.uuid4().hex[:10]}"
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'nurture.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Run the test against a SQLite file and against PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nurture.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def migrated_engine(db_url):
    from nurture.store.db import make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(migrated_engine):
    from nurture.store.store import LeadStore

    return LeadStore(migrated_engine)


@pytest.fixture(scope="session")
def campaigns_dir() -> Path:
    return REPO / "campaigns"


@pytest.fixture(scope="session")
def templates_dir() -> Path:
    return REPO / "templates"


@pytest.fixture(scope="session")
def config(campaigns_dir, templates_dir):
    from nurture.services.validation import load_valid_config

    return load_valid_config(campaigns_dir, templates_dir)


@pytest.fixture(scope="session")
def rules(config):
    from nurture.core.rules import Rules

    return Rules.compile(config)


@pytest.fixture(scope="session")
def prefect_server():
    """One real ephemeral Prefect server (SQLite-backed, ≈6 s) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
