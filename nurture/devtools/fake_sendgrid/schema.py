"""What the fake accepts: the Mail Send JSON Schema, and the documented limits it cannot express.

The schema ships as package data beside this package (`nurture/devtools/
sendgrid_mail_send.schema.json`), derived from SendGrid's official OpenAPI description;
`NURTURE_FAKE_SENDGRID_SCHEMA`, `--schema` or `schema_path` select another, such as the
official `tsg_mail_v3.json`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

OWN_SCHEMA = Path(__file__).parent.with_name("sendgrid_mail_send.schema.json")
"""The project's own JSON Schema of the Mail Send fields nurture sends (package data)."""
SCHEMA_ENV = "NURTURE_FAKE_SENDGRID_SCHEMA"
SCHEMA_REF = "#/components/requestBodies/PostMailSend/content/application~1json/schema"


def default_schema_path() -> Path:
    """The schema the fake validates against when none is passed: `NURTURE_FAKE_SENDGRID_SCHEMA`
    if set (e.g. SendGrid's official `tsg_mail_v3.json`), else the project's own schema, which
    ships with the package so a plain clone or install needs nothing beside it."""
    configured = os.environ.get(SCHEMA_ENV)
    return Path(configured) if configured else OWN_SCHEMA


def load_validator(schema_path: Path | None):
    """A Draft 2020-12 validator for the Mail Send request body. `schema_path` is either a
    plain JSON Schema (the project's own) or SendGrid's official OpenAPI document, recognised
    by its `openapi` key, whose `PostMailSend` request schema is then used."""
    # deferred: jsonschema is a dev extra, needed only when the fake validates
    from jsonschema import Draft202012Validator

    path = Path(schema_path or default_schema_path())
    if not path.is_file():
        raise FileNotFoundError(f"SendGrid mail-send schema not found at {path}; pass --schema "
                                "PATH (a JSON Schema, or tsg_mail_v3.json from "
                                "twilio/sendgrid-oai), or omit it to use nurture's own")
    doc = json.loads(path.read_text(encoding="utf-8"))
    if "openapi" in doc:
        doc = doc | {"$ref": SCHEMA_REF}
    return Draft202012Validator(doc)


def sg_error(message: str, field_: str | None = None) -> dict:
    """One entry of a SendGrid-style `errors` list."""
    return {"message": message, "field": field_, "help": None}


def schema_errors(validator: Any, body: Any) -> list[dict]:
    """The validator's errors, in path order, as SendGrid-style entries."""
    errors = []
    for e in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in e.absolute_path) or None
        errors.append(sg_error(e.message, path))
    return errors


def limit_errors(body: dict) -> list[dict]:
    """The documented Mail Send limits a JSON Schema cannot express: recipient and
    category counts, `send_at` at most 72 hours ahead, `custom_args` under 10,000 bytes."""
    errors = []
    recipients = sum(len(p.get("to", [])) + len(p.get("cc", [])) + len(p.get("bcc", []))
                     for p in body.get("personalizations", []))
    if len(body.get("personalizations", [])) > 1000 or recipients > 1000:
        errors.append(sg_error("at most 1000 personalizations and recipients",
                               "personalizations"))
    if len(body.get("categories", [])) > 10:
        errors.append(sg_error("at most 10 categories", "categories"))
    now = time.time()
    for i, p in enumerate(body.get("personalizations", [])):
        if p.get("send_at") and p["send_at"] > now + 72 * 3600:
            errors.append(sg_error("send_at may be at most 72 hours ahead",
                                   f"personalizations.{i}.send_at"))
        if len(json.dumps(p.get("custom_args", {}))) >= 10_000:
            errors.append(sg_error("custom_args must be under 10,000 bytes",
                                   f"personalizations.{i}.custom_args"))
    return errors
