"""`nurture simulate`: the real engine on a scratch copy — the real store is never written
(checksum), the run is reproducible (seed), and a baseline config is compared side by side."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from nurture.entrypoints.cli.main import main

REPO = Path(__file__).resolve().parents[2]
START = "2026-11-02T08:00:00Z"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NURTURE_DATABASE_URL", f"sqlite:///{tmp_path}/real.db")
    monkeypatch.setenv("NURTURE_CAMPAIGNS_DIR", str(REPO / "campaigns"))
    monkeypatch.setenv("NURTURE_TEMPLATES_DIR", str(REPO / "templates"))
    assert main(["db", "upgrade"]) == 0
    rows = "\n".join(f"lead{i}@example.com,Lead{i},Co{i},VP Marketing,software,500,"
                     f"{'webinar' if i % 3 == 0 else 'website'},UTC,2026-10-01T00:00:00Z"
                     for i in range(60))
    (tmp_path / "leads.csv").write_text("email,first_name,company,title,industry,company_size,"
                                        "source,timezone,created_at\n" + rows + "\n")
    assert main(["import-leads", str(tmp_path / "leads.csv")]) == 0
    return tmp_path


def run(capsys, *args: str) -> dict:
    assert main(["simulate", "--start", START, "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_from_db_never_writes_the_real_store(world, capsys):
    before = _sha(world / "real.db")
    out = run(capsys, "--days", "10", "--from-db", "--out", str(world / "r.html"))
    assert _sha(world / "real.db") == before
    tot = out["totals"]["proposed"]
    assert tot["sent"] > 60  # every lead enrolled and mailed, some more than once
    assert sum(tot["funnel"].values()) == 60
    assert any(k.startswith("inbound-saas/education/") for k in tot["sends_by_step"])
    assert any(k.startswith("webinar-followup/") for k in tot["sends_by_step"])
    html = (world / "r.html").read_text()
    assert "<svg" in html and "Emails sent per day" in html and "http" not in html.split(
        "<main>")[1].replace("https://", "")


def test_seeded_and_reproducible_and_a_baseline_shows_the_difference(world, capsys):
    a = run(capsys, "--days", "14", "--leads", "synthetic:150", "--seed", "3")
    b = run(capsys, "--days", "14", "--leads", "synthetic:150", "--seed", "3")
    assert a["totals"] == b["totals"]
    faster = world / "faster"
    shutil.copytree(REPO / "campaigns", faster)
    f = faster / "inbound-saas.yaml"
    f.write_text(f.read_text().replace("    cadence_days: 7\n", "    cadence_days: 3\n", 1))
    cmp = run(capsys, "--days", "14", "--leads", "synthetic:150", "--seed", "3",
              "--campaigns", str(faster), "--baseline", str(REPO / "campaigns"))
    assert cmp["totals"]["baseline"] == a["totals"]["proposed"]
    prop, base = cmp["totals"]["proposed"], cmp["totals"]["baseline"]

    def education(tot: dict) -> int:
        return sum(v for k, v in tot["sends_by_step"].items()
                   if k.startswith("inbound-saas/education/"))

    assert education(prop) > education(base)  # a 3-day cadence gets through the track sooner
