"""Shared fixtures for the pure unit tests: the real config, compiled rules and small
factories for leads, activities and touches. No database, no Prefect, no network."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nurture.core.config import Config, load_config
from nurture.core.domain import NURTURING, SENT, ActivityFact, LeadSnapshot, TouchFact
from nurture.core.rules import Rules

REPO_ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS_DIR = REPO_ROOT / "campaigns"
TEMPLATES_DIR = REPO_ROOT / "templates"

# A Wednesday, 07:00 in New York (EST, UTC-5). Test modules get it from the `as_of` fixture.
AS_OF = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(scope="session")
def as_of() -> datetime:
    return AS_OF


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def templates_dir() -> Path:
    return TEMPLATES_DIR


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config(CAMPAIGNS_DIR)


@pytest.fixture(scope="session")
def rules(config: Config) -> Rules:
    return Rules.compile(config)


@pytest.fixture(scope="session")
def act(rules: Rules) -> Callable[..., ActivityFact]:
    """`act("page_view", when)`: an activity with its raw points from the real scoring table
    (the way the lead store loads them)."""

    def make(kind: str, occurred_at: datetime) -> ActivityFact:
        return ActivityFact(kind, occurred_at, rules.scores.raw_points(kind))

    return make


@pytest.fixture(scope="session")
def sent() -> Callable[..., TouchFact]:
    """`sent("inbound-saas", "buyers-guide", when)`: a touch the ledger says was sent."""

    def make(campaign: str, step: str, sent_at: datetime, round_: int = 0,
             status: str = SENT) -> TouchFact:
        return TouchFact(campaign, step, round_, status, sent_at if status == SENT else None)

    return make


@pytest.fixture(scope="session")
def make_lead() -> Callable[..., LeadSnapshot]:
    """A website lead (inbound-saas audience) in New York; override anything by keyword."""

    def make(stage: str = NURTURING, fields: dict | None = None, **kw) -> LeadSnapshot:
        base = {"email": "jordan.lee@example.com", "first_name": "Jordan", "last_name": "Lee",
                "company": "Example Corp", "title": "Marketing Manager", "company_size": 50,
                "industry": "software", "country": "US", "source": "website"}
        base.update(fields or {})
        kw.setdefault("stage_entered_at", AS_OF - 10 * DAY)
        kw.setdefault("timezone", "America/New_York")
        return LeadSnapshot(id=kw.pop("id", 1), email=base["email"], fields=base,
                            lifecycle_stage=stage, **kw)

    return make


@pytest.fixture
def write_campaigns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> Callable[..., Path]:
    """Write a campaigns dir under tmp_path (the working directory, so problems are reported
    as `campaigns/<file>`); `lifecycle=None` leaves lifecycle.yaml out."""
    monkeypatch.chdir(tmp_path)

    def write(files: dict[str, str], lifecycle: str | None = None) -> Path:
        directory = tmp_path / "campaigns"
        directory.mkdir(exist_ok=True)
        if lifecycle is not None:
            (directory / "lifecycle.yaml").write_text(lifecycle, encoding="utf-8")
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
        return directory

    return write


@pytest.fixture(scope="session")
def real_lifecycle_text() -> str:
    return (CAMPAIGNS_DIR / "lifecycle.yaml").read_text(encoding="utf-8")
