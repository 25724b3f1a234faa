"""The fake SendGrid's `--log` sink and random faults, used by the chaos harness."""

from __future__ import annotations

import json

import httpx

from nurture.devtools.fake_sendgrid import OWN_SCHEMA as SCHEMA
from nurture.devtools.fake_sendgrid import FakeSendGrid


def _mail(touch_id: int, to: str) -> dict:
    return {"personalizations": [{"to": [{"email": to}],
                                  "custom_args": {"touch_id": str(touch_id),
                                                  "campaign": "inbound-saas",
                                                  "step": "welcome"}}],
            "from": {"email": "marketing@acme.example"}, "subject": "Hi",
            "content": [{"type": "text/plain", "value": "Hello"}]}


def test_log_has_one_line_per_accepted_message(tmp_path):
    log = tmp_path / "sent.jsonl"
    with FakeSendGrid(schema_path=SCHEMA, log_path=log) as fake:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        fake.inject(status=503)
        for i in (1, 1, 2):
            httpx.post(f"{fake.url}/v3/mail/send", json=_mail(i, f"l{i}@example.com"),
                       headers=auth, timeout=5)
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    # the 503 accepted nothing; the two accepted messages are logged
    assert [(r["touch_id"], r["to"], r["campaign"], r["step"]) for r in rows] == [
        ("1", "l1@example.com", "inbound-saas", "welcome"),
        ("2", "l2@example.com", "inbound-saas", "welcome")]
    assert all(isinstance(r["time"], float) and r["message_id"] for r in rows)


def test_fault_rate_one_faults_every_request():
    with FakeSendGrid(validate=False, fault_rate=1.0, fault_delay=0.01, fault_seed=3) as fake:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        codes = [httpx.post(f"{fake.url}/v3/mail/send", json=_mail(i, "a@example.com"),
                            headers=auth, timeout=5).status_code for i in range(40)]
    faults = [c for c in codes if c != 202]
    assert set(faults) <= {429, 500, 503} and len(faults) >= 20
    assert len(fake.messages) == codes.count(202)  # the slow answers were accepted
