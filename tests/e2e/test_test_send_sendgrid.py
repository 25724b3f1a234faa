"""`nurture test-send` over real HTTP to the fake SendGrid (schema-validated bodies): the
`[TEST]` subject, the recipient, and custom args that can never match a touch."""

from __future__ import annotations

import shutil
from pathlib import Path

from nurture.entrypoints.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def test_test_send_through_sendgrid(tmp_path, monkeypatch, fake_sendgrid, capsys):
    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    lc = tmp_path / "campaigns" / "lifecycle.yaml"
    lc.write_text(lc.read_text() + "\ntest_recipients: [qa@acme.example]\n")
    monkeypatch.chdir(tmp_path)
    for key, value in {"NURTURE_CAMPAIGNS_DIR": str(tmp_path / "campaigns"),
                       "NURTURE_TEMPLATES_DIR": str(REPO / "templates"),
                       "NURTURE_TRANSPORT": "sendgrid",
                       "NURTURE_SENDGRID_HOST": fake_sendgrid.url,
                       "SENDGRID_API_KEY": fake_sendgrid.api_key,
                       "NURTURE_SENDGRID_API_KEY": fake_sendgrid.api_key,
                       "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path}/unused.db"}.items():
        monkeypatch.setenv(key, value)
    assert main(["test-send", "webinar-followup", "--step", "recording-and-slides",
                 "--to", "qa@acme.example", "--persona", "non-ascii", "--json"]) == 0
    assert len(fake_sendgrid.messages) == 1
    rec = fake_sendgrid.messages[0]
    assert rec.to == "qa@acme.example"
    assert rec.body["subject"] == "[TEST] Zoë-Åsa, your webinar recording and slides"
    assert rec.custom_args["touch_id"] == "test-send"
    assert rec.custom_args["test_send"] == "true"
    assert not (tmp_path / "unused.db").exists()  # no store was touched
    # a recipient outside test_recipients: refused before any HTTP request
    assert main(["test-send", "webinar-followup", "--to", "x@elsewhere.example"]) == 1
    assert len(fake_sendgrid.messages) == 1
