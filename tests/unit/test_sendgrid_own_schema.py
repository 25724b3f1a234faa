"""The project's own Mail Send schema (what `nurture fake-sendgrid` enforces by default) covers
exactly the fields the transport sends, and never more than SendGrid's official schema allows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared_ref import SCHEMA_FILE, official_sendgrid_file

from nurture.adapters.delivery.sendgrid import build_mail
from nurture.core.config import Sender
from nurture.core.messages import Message
from nurture.devtools.fake_sendgrid import OWN_SCHEMA, SCHEMA_REF, load_validator

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _body(**changes) -> dict:
    s = Sender(from_email="m@acme.example", from_name="Acme", reply_to="r@acme.example",
               postal_address="1 Main St")
    msg = Message(1, "a@b.example", "Ana", s, "Hi", "<p>x</p>", "x", "https://x/u/t",
                  datetime(2026, 11, 21, 9, 0, tzinfo=UTC), "c", "s")
    return build_mail(msg, sandbox=True, now=NOW) | changes


def test_own_schema_is_marked_with_its_source_and_ships_as_package_data():
    doc = json.loads(OWN_SCHEMA.read_text(encoding="utf-8"))
    assert "tsg_mail_v3.json" in doc["$comment"] and "sendgrid-oai" in doc["$comment"]
    assert doc["additionalProperties"] is False


def test_own_schema_accepts_a_full_body_and_refuses_fields_nurture_never_sends():
    validator = load_validator(OWN_SCHEMA)
    body = _body(batch_id="b1")
    assert {"reply_to", "mail_settings", "categories"} <= body.keys()
    assert list(validator.iter_errors(body)) == []
    assert list(validator.iter_errors(body | {"template_id": "d-1"}))
    assert list(validator.iter_errors(body | {"subject": ""}))
    p = body["personalizations"][0]
    for bad in ({"cc": [{"email": "c@d.example"}]}, {"custom_args": {"touch_id": 1}}):
        assert list(validator.iter_errors(body | {"personalizations": [p | bad]}))


def test_every_own_field_exists_in_the_official_schema():
    doc = json.loads(official_sendgrid_file(SCHEMA_FILE).read_text(encoding="utf-8"))
    official = doc["components"]["requestBodies"]["PostMailSend"]["content"][
        "application/json"]["schema"]
    assert SCHEMA_REF.endswith("PostMailSend/content/application~1json/schema")
    own = json.loads(OWN_SCHEMA.read_text(encoding="utf-8"))
    assert own["properties"].keys() <= official["properties"].keys()
    own_p = own["$defs"]["personalization"]["properties"]
    assert own_p.keys() <= official["properties"]["personalizations"]["items"][
        "properties"].keys()
    assert own["properties"]["mail_settings"]["properties"].keys() <= official["properties"][
        "mail_settings"]["properties"].keys()
