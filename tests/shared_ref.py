"""Where SendGrid's OFFICIAL reference lives for the contract tests: never in the repository.

`NURTURE_SENDGRID_SCHEMA` names it — the official OpenAPI file `tsg_mail_v3.json` (from
twilio/sendgrid-oai) or the directory that holds it; the Event Webhook examples
(`event-webhook-examples.json`) are read from the same directory. Without it, a checkout with a
`shared/reference/sendgrid/` directory beside it (`../shared/...` from the repository root) is
used. Otherwise the tests that need it are skipped with `MISSING`, or fail with it when
`NURTURE_REQUIRE_SENDGRID_SCHEMA=1` (CI sets it, see `.ci/run`).

Everything else (the fake SendGrid in e2e tests) uses the project's own schema,
`nurture/devtools/sendgrid_mail_send.schema.json`, so it runs anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = "tsg_mail_v3.json"
EVENTS_FILE = "event-webhook-examples.json"
BESIDE_CHECKOUT = REPO.parent / "shared" / "reference" / "sendgrid"
REQUIRED = os.environ.get("NURTURE_REQUIRE_SENDGRID_SCHEMA") == "1"


def official_sendgrid_dir() -> Path:
    """The directory of SendGrid's official reference files (may not exist)."""
    configured = os.environ.get("NURTURE_SENDGRID_SCHEMA")
    if configured:
        path = Path(configured)
        return path.parent if path.suffix == ".json" else path
    return BESIDE_CHECKOUT


def _missing(path: Path) -> str:
    return (f"SendGrid's official reference is not available ({path} not found): set "
            f"NURTURE_SENDGRID_SCHEMA to tsg_mail_v3.json from twilio/sendgrid-oai (or its "
            f"directory), or put it at ../shared/reference/sendgrid/ beside the checkout")


def official_sendgrid_file(name: str) -> Path:
    """One official reference file; skips the calling test when it is not available, or fails
    it when NURTURE_REQUIRE_SENDGRID_SCHEMA=1."""
    configured = os.environ.get("NURTURE_SENDGRID_SCHEMA")
    if configured and name == SCHEMA_FILE and Path(configured).suffix == ".json":
        path = Path(configured)
    else:
        path = official_sendgrid_dir() / name
    if not path.is_file():
        if REQUIRED:
            pytest.fail(_missing(path) + " (NURTURE_REQUIRE_SENDGRID_SCHEMA=1)", pytrace=False)
        pytest.skip(_missing(path))
    return path
