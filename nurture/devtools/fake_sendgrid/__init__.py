"""A fake SendGrid on loopback, for tests and local development (`nurture fake-sendgrid`).

It speaks the real wire protocol, so the engine is tested over real HTTP and not by patching
the SDK: `POST /v3/mail/send` checks the bearer key and validates the body against nurture's
own JSON Schema of the fields it sends (`sendgrid_mail_send.schema.json` beside this package,
derived from SendGrid's official OpenAPI description; `schema_path`, `--schema` or
`NURTURE_FAKE_SENDGRID_SCHEMA` select another, such as the official `tsg_mail_v3.json`)
(400 with SendGrid-style `errors` when it does not), answers 202 with
an `X-Message-Id` and records the message. Faults can be queued (429, 5xx, 400, slow answers
that trip the client's timeout), and it can post ECDSA-signed Event Webhook batches, shaped
like SendGrid's, for the messages it accepted.

Control endpoints (for the CLI; tests use the Python API directly):
`GET /__fake__/messages`, `DELETE /__fake__/messages`, `POST /__fake__/faults`
(`{"status": 429, "times": 2}` or `{"delay": 3.0}`), `POST /__fake__/events`
(`{"url": ".../webhooks/sendgrid", "kinds": ["delivered", "open", "click"]}`),
`GET /__fake__/public-key`.

Scheduled sends: `POST /v3/mail/batch` issues batch ids (201 `{"batch_id"}`), a send may carry
one, and `POST /v3/user/scheduled_sends` (`{"batch_id", "status": "cancel"|"pause"}`, 201;
400 when the id is unknown or already has a status), `GET`/`PATCH
/v3/user/scheduled_sends/{batch_id}` manage them. A message with a future `send_at` is held
(`state` "scheduled" in `GET /__fake__/messages`); one whose batch was cancelled before its
`send_at` is "cancelled", never delivered: `events_for` emits no events for it.
Faults can target these endpoints with `path` (`inject(503, path="/v3/user/scheduled_sends")`).
"""

from nurture.devtools.fake_sendgrid.events import EVENT_KINDS
from nurture.devtools.fake_sendgrid.records import Fault, Recorded
from nurture.devtools.fake_sendgrid.schema import (
                                                   OWN_SCHEMA,
                                                   SCHEMA_ENV,
                                                   SCHEMA_REF,
                                                   default_schema_path,
                                                   load_validator,
)
from nurture.devtools.fake_sendgrid.server import FakeSendGrid

__all__ = ["EVENT_KINDS", "OWN_SCHEMA", "SCHEMA_ENV", "SCHEMA_REF", "FakeSendGrid", "Fault",
           "Recorded", "default_schema_path", "load_validator"]
