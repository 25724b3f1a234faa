"""`nurture test-send`: through the configured transport, `[TEST]`-prefixed, only to
`test_recipients`, never in the ledger. Outbox here; SendGrid over HTTP in tests/e2e."""

from __future__ import annotations

import shutil
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from nurture.entrypoints.cli.main import main
from nurture.store import tables as t

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    lc = tmp_path / "campaigns" / "lifecycle.yaml"
    lc.write_text(lc.read_text()
                  + "\ntest_recipients: [qa@acme.example, '*@marketing.acme.example']\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NURTURE_DATABASE_URL", f"sqlite:///{tmp_path}/n.db")
    monkeypatch.setenv("NURTURE_CAMPAIGNS_DIR", str(tmp_path / "campaigns"))
    monkeypatch.setenv("NURTURE_TEMPLATES_DIR", str(REPO / "templates"))
    monkeypatch.setenv("NURTURE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("NURTURE_TRANSPORT", "outbox")
    monkeypatch.setenv("NURTURE_PUBLIC_URL", "https://nurture.acme.example")
    assert main(["db", "upgrade"]) == 0
    (tmp_path / "leads.csv").write_text("email,first_name,company,source\n"
                                        "ana@customer.example,Ana,Customer Co,website\n")
    assert main(["import-leads", str(tmp_path / "leads.csv")]) == 0
    return tmp_path


def _touches(root: Path) -> int:
    engine = create_engine(f"sqlite:///{root}/n.db")
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(t.touches)).scalar_one()


def test_test_send_to_the_outbox_as_a_real_lead(world, capsys):
    assert main(["test-send", "inbound-saas", "--step", "demo-invite", "--to",
                 "qa@acme.example", "--to", "Lee@Marketing.Acme.example",
                 "--as-lead", "ana@customer.example"]) == 0
    out = capsys.readouterr().out
    assert "not recorded in the ledger" in out
    emls = sorted((world / "outbox" / "test-sends").rglob("*.eml"))
    assert len(emls) == 4  # two variants × two recipients
    parsed = [BytesParser(policy=default_policy).parsebytes(p.read_bytes()) for p in emls]
    assert {str(m["To"]).split("<")[-1].rstrip(">") for m in parsed} == {
        "qa@acme.example", "Lee@Marketing.Acme.example"}
    subjects = {str(m["Subject"]) for m in parsed}
    assert subjects == {"[TEST] See it live in 20 minutes", "[TEST] Ana, want a walkthrough?"}
    body = parsed[0].get_body(("html",)).get_content()
    assert "Customer Co" in body  # rendered with the real lead's data
    assert "https://nurture.acme.example/unsubscribe/TEST-SEND" in body  # inert link
    assert not (world / "outbox" / "index.jsonl").exists()  # apart from real mail
    assert (world / "outbox" / "test-sends" / "index.html").is_file()
    assert _touches(world) == 0  # never in the ledger


def test_recipients_not_listed_are_refused_and_nothing_is_sent(world, capsys):
    assert main(["test-send", "inbound-saas", "--to", "qa@acme.example",
                 "--to", "ceo@customer.example", "--persona", "no-first-name"]) == 1
    err = capsys.readouterr().err
    assert "not in test_recipients: ceo@customer.example" in err
    assert not (world / "outbox" / "test-sends").exists()


def test_without_test_recipients_nothing_may_be_sent(world, capsys):
    lc = world / "campaigns" / "lifecycle.yaml"
    lc.write_text(lc.read_text().split("\ntest_recipients:")[0] + "\n")
    assert main(["test-send", "inbound-saas", "--to", "qa@acme.example"]) == 1
    assert "no test_recipients in lifecycle.yaml" in capsys.readouterr().err


def test_unknown_step_and_variant_are_refused(world, capsys):
    assert main(["test-send", "inbound-saas", "--step", "nope", "--to", "qa@acme.example"]) == 1
    assert "has no step 'nope'" in capsys.readouterr().err
    assert main(["test-send", "inbound-saas", "--step", "demo-invite", "--variant", "c",
                 "--to", "qa@acme.example"]) == 1
    assert "has no variant 'c'" in capsys.readouterr().err


def test_bad_test_recipients_entry_is_a_config_problem(world, capsys):
    lc = world / "campaigns" / "lifecycle.yaml"
    lc.write_text(lc.read_text().replace("qa@acme.example", "not-an-address"))
    assert main(["validate"]) == 1
    assert "test_recipients: not an email address or *@domain: not-an-address" in \
        capsys.readouterr().out
