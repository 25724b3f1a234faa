"""A fake SendGrid on loopback, for tests and local development (`nurture fake-sendgrid`).

It speaks the real wire protocol, so the engine is tested over real HTTP and not by patching
the SDK: `POST /v3/mail/send` checks the bearer key and validates the body against nurture's
own JSON Schema of the fields it sends (`sendgrid_mail_send.schema.json` beside this module,
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

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

OWN_SCHEMA = Path(__file__).with_name("sendgrid_mail_send.schema.json")
"""The project's own JSON Schema of the Mail Send fields nurture sends (package data)."""
SCHEMA_ENV = "NURTURE_FAKE_SENDGRID_SCHEMA"
SCHEMA_REF = "#/components/requestBodies/PostMailSend/content/application~1json/schema"
EVENT_KINDS = ("processed", "delivered", "deferred", "open", "machine_open", "click",
               "scanner_click", "bounce", "blocked", "dropped", "spamreport", "unsubscribe",
               "group_unsubscribe")


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


def _sg_error(message: str, field_: str | None = None) -> dict:
    return {"message": message, "field": field_, "help": None}


@dataclass
class Fault:
    status: int | None = None       # answer with this status instead of 202
    delay: float = 0.0              # sleep this long first; without a status the message is
    #                                 still accepted, so a delay past the client's timeout is
    #                                 a send the client cannot tell from a failure
    to: str | None = None           # only for mail to this recipient (None: any)
    path: str | None = None         # only for this endpoint (None: mail send)


@dataclass
class Recorded:
    message_id: str
    body: dict
    received_at: float
    cancelled_at: float | None = None  # its batch was cancelled (before send_at) then

    @property
    def batch_id(self) -> str | None:
        return self.body.get("batch_id")

    @property
    def send_at(self) -> int | None:
        return self.body["personalizations"][0].get("send_at") or self.body.get("send_at")

    @property
    def state(self) -> str:
        """scheduled (held until send_at) | cancelled (never sent) | sent."""
        if self.cancelled_at is not None:
            return "cancelled"
        return "scheduled" if self.send_at and self.send_at > time.time() else "sent"

    @property
    def custom_args(self) -> dict:
        return self.body["personalizations"][0].get("custom_args", {})

    @property
    def to(self) -> str:
        return self.body["personalizations"][0]["to"][0]["email"]


@dataclass
class FakeSendGrid:
    api_key: str = "SG.fake-test-key"
    schema_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    validate: bool = True
    latency: float = 0.0  # seconds added to every answer (a real API is ~50-150 ms away)
    messages: list[Recorded] = field(default_factory=list)
    requests: int = 0
    rejected: list[dict] = field(default_factory=list)
    # append one JSON line per accepted message (touch_id, to, campaign, step, variant, time):
    # a sink that survives the fake being restarted and that harnesses count duplicates from
    log_path: Path | None = None
    # random faults on this share of requests (429, 500/503, or a delay of `fault_delay`
    # seconds after which the message IS accepted: a timeout the client cannot judge)
    fault_rate: float = 0.0
    fault_delay: float = 2.0
    fault_seed: int | None = None

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._validator = load_validator(self.schema_path) if self.validate else None
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._server: ThreadingHTTPServer | None = None
        self.batches: dict[str, str | None] = {}  # batch id -> scheduled-send status
        self._thread: threading.Thread | None = None
        self._rng = random.Random(self.fault_seed)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> FakeSendGrid:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-sendgrid")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- faults -------------------------------------------------------------------------
    def inject(self, status: int | None = None, delay: float = 0.0, times: int = 1,
               to: str | None = None, path: str | None = None) -> None:
        """Queue `times` faults, consumed by the next matching requests in order."""
        with self._lock:
            for _ in range(times):
                self._faults.append(Fault(status, delay, to, path))

    def _next_fault(self, to: str | None, path: str | None = None) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.path == path and (f.to is None or f.to == to):
                    self._faults.remove(f)
                    return f
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice((Fault(status=429), Fault(status=500),
                                         Fault(status=503), Fault(delay=self.fault_delay)))
            return None

    def _log_accepted(self, rec: Recorded) -> None:
        if self.log_path is None:
            return
        args = rec.custom_args
        line = json.dumps({"touch_id": args.get("touch_id"), "to": rec.to,
                           "campaign": args.get("campaign"), "step": args.get("step"),
                           "variant": args.get("variant"), "message_id": rec.message_id,
                           "time": rec.received_at})
        with self._lock, open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self._faults.clear()
            self.requests = 0

    # -- mail send ----------------------------------------------------------------------
    def handle_send(self, auth: str | None, raw: bytes) -> tuple[int, dict, dict | None]:
        """(status, headers, json body) for one `POST /v3/mail/send`."""
        with self._lock:
            self.requests += 1
        if self.latency:
            time.sleep(self.latency)
        if auth != f"Bearer {self.api_key}":
            return 401, {}, {"errors": [_sg_error("The provided authorization grant is "
                                                  "invalid, expired, or revoked")]}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        try:
            to = body["personalizations"][0]["to"][0]["email"]
        except (KeyError, IndexError, TypeError):
            to = None
        fault = self._next_fault(to)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status:
            headers = {"Retry-After": "0"} if fault.status == 429 else {}
            message = {429: "too many requests", 400: "Bad Request (injected)"}.get(
                fault.status, "internal server error (injected)")
            return fault.status, headers, {"errors": [_sg_error(message)]}
        if body is None:
            return 400, {}, {"errors": [_sg_error("Bad Request: the body is not valid JSON")]}
        errors = self.check(body)
        if not errors and isinstance(body, dict) and "batch_id" in body \
                and body["batch_id"] not in self.batches:
            errors = [_sg_error("invalid batch id", "batch_id")]
        if errors:
            self.rejected.append({"body": body, "errors": errors})
            return 400, {}, {"errors": errors}
        mid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")[:22]
        rec = Recorded(mid, body, time.time())
        with self._lock:
            self.messages.append(rec)
        self._log_accepted(rec)
        return 202, {"X-Message-Id": mid}, None

    def check(self, body: Any) -> list[dict]:
        """Schema errors plus the documented limits the schema cannot express."""
        errors = []
        if self._validator is not None:
            for e in sorted(self._validator.iter_errors(body), key=lambda e: list(e.path)):
                path = ".".join(str(p) for p in e.absolute_path) or None
                errors.append(_sg_error(e.message, path))
        if errors or not isinstance(body, dict):
            return errors
        recipients = sum(len(p.get("to", [])) + len(p.get("cc", [])) + len(p.get("bcc", []))
                         for p in body.get("personalizations", []))
        if len(body.get("personalizations", [])) > 1000 or recipients > 1000:
            errors.append(_sg_error("at most 1000 personalizations and recipients",
                                    "personalizations"))
        if len(body.get("categories", [])) > 10:
            errors.append(_sg_error("at most 10 categories", "categories"))
        now = time.time()
        for i, p in enumerate(body.get("personalizations", [])):
            if p.get("send_at") and p["send_at"] > now + 72 * 3600:
                errors.append(_sg_error("send_at may be at most 72 hours ahead",
                                        f"personalizations.{i}.send_at"))
            if len(json.dumps(p.get("custom_args", {}))) >= 10_000:
                errors.append(_sg_error("custom_args must be under 10,000 bytes",
                                        f"personalizations.{i}.custom_args"))
        return errors

    # -- batches and scheduled sends ----------------------------------------------------
    def handle_scheduled(self, method: str, path: str, auth: str | None, raw: bytes
                         ) -> tuple[int, dict | list | None]:
        """`POST /v3/mail/batch` and the `/v3/user/scheduled_sends` family."""
        with self._lock:
            self.requests += 1
        if self.latency:
            time.sleep(self.latency)
        if auth != f"Bearer {self.api_key}":
            return 401, {"errors": [_sg_error("The provided authorization grant is invalid, "
                                              "expired, or revoked")]}
        route = "/v3/user/scheduled_sends" if path.startswith("/v3/user/scheduled_sends") \
            else path
        fault = self._next_fault(None, route)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status:
            return fault.status, {"errors": [_sg_error("injected fault")]}
        if method == "POST" and path == "/v3/mail/batch":
            batch_id = secrets.token_urlsafe(24)
            with self._lock:
                self.batches[batch_id] = None
            return 201, {"batch_id": batch_id}
        try:
            spec = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {"errors": [_sg_error("invalid JSON")]}
        if method == "POST" and path == "/v3/user/scheduled_sends":
            batch_id, status = spec.get("batch_id"), spec.get("status")
            if status not in ("cancel", "pause"):
                return 400, {"errors": [_sg_error("status must be cancel or pause", "status")]}
            return self._set_status(batch_id, status, new=True)
        batch_id = path.rsplit("/", 1)[-1]
        if method == "GET":
            status = self.batches.get(batch_id)
            return 200, ([{"batch_id": batch_id, "status": status}] if status else [])
        if method == "PATCH":
            if self.batches.get(batch_id) is None:
                return 404, {"errors": [_sg_error("batch id not found")]}
            code, body = self._set_status(batch_id, spec.get("status"), new=False)
            return (204, None) if code == 201 else (code, body)
        return 404, {"errors": [_sg_error(f"no route for {method} {path}")]}

    def _set_status(self, batch_id: Any, status: str, new: bool) -> tuple[int, dict]:
        with self._lock:
            if batch_id not in self.batches:
                return 400, {"errors": [_sg_error("invalid batch id", "batch_id")]}
            if new and self.batches[batch_id] is not None:
                return 400, {"errors": [_sg_error("batch id already has a status",
                                                  "batch_id")]}
            self.batches[batch_id] = status
            if status == "cancel":
                now = time.time()
                for m in self.messages:
                    if m.batch_id == batch_id and m.send_at and m.send_at > now \
                            and m.cancelled_at is None:
                        m.cancelled_at = now
        return 201, {"batch_id": batch_id, "status": status}

    # -- event webhook ------------------------------------------------------------------
    @property
    def public_key(self) -> str:
        """The verification key, base64 DER, as SendGrid's settings page shows it."""
        from cryptography.hazmat.primitives import serialization

        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def sign(self, payload: bytes, timestamp: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        sig = self._key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(sig).decode()

    def events_for(self, kinds: list[str], messages: list[Recorded] | None = None,
                   seconds_after: float = 60.0, at: float | None = None) -> list[dict]:
        """Event Webhook events for recorded messages, with our custom_args as top-level
        keys. `machine_open` is an open with `sg_machine_open: true`; `scanner_click` is a
        click one second after delivery (a link scanner). Engagement comes `seconds_after`
        delivery. Delivery is at `at` (epoch seconds) for simulations that move the clock,
        else when the message was accepted — moved back so no event lies in the future."""
        out = []
        for rec in (self.messages if messages is None else messages):
            if rec.state == "cancelled":
                continue  # never sent: SendGrid reports nothing for it
            base_ts = int(at if at is not None
                          else min(rec.received_at, time.time() - seconds_after - 1))
            for kind in kinds:
                if kind not in EVENT_KINDS:
                    raise ValueError(f"unknown event kind {kind!r}; one of {EVENT_KINDS}")
                event = kind
                ev: dict[str, Any] = {
                    "email": rec.to, "timestamp": base_ts + int(seconds_after),
                    "smtp-id": f"<{rec.message_id}@fake-sendgrid>",
                    "category": rec.body.get("categories", []),
                    "sg_message_id": f"{rec.message_id}.filter0001.1.0",
                    "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode(),
                }
                if kind == "machine_open":
                    event, ev["sg_machine_open"] = "open", True
                elif kind == "open":
                    ev["sg_machine_open"] = False
                if kind in ("click", "scanner_click"):
                    event = "click"
                    ev["url"] = "https://acme.example/guide"
                    if kind == "scanner_click":
                        ev["timestamp"] = base_ts + 1
                if kind in ("open", "machine_open", "click", "scanner_click",
                            "group_unsubscribe"):
                    ev["useragent"] = "Mozilla/5.0"
                    ev["ip"] = "203.0.113.7"
                if kind in ("bounce", "blocked"):
                    event = "bounce"
                    ev.update(type=kind, status="5.1.1",
                              reason="550 5.1.1 The email account does not exist")
                elif kind == "dropped":
                    ev.update(reason="Bounced Address", status="5.0.0")
                elif kind == "deferred":
                    ev.update(response="400 try again later", attempt="1")
                elif kind == "delivered":
                    ev["response"] = "250 OK"
                    ev["timestamp"] = base_ts
                elif kind == "processed":
                    ev["timestamp"] = base_ts
                elif kind == "group_unsubscribe":
                    ev["asm_group_id"] = 1
                ev["event"] = event
                ev.update(rec.custom_args)
                out.append(ev)
        return out

    def post_events(self, url: str, events: list[dict], tamper: bool = False,
                    timestamp: str | None = None, sign: bool = True):
        """POST one signed batch, exactly as SendGrid would; returns the httpx response."""
        import httpx

        payload = json.dumps(events).encode()
        ts = timestamp or str(int(time.time()))
        headers = {"Content-Type": "application/json",
                   "User-Agent": "SendGrid Event API"}
        if sign:
            headers["X-Twilio-Email-Event-Webhook-Signature"] = self.sign(payload, ts)
            headers["X-Twilio-Email-Event-Webhook-Timestamp"] = ts
        if tamper:
            payload = payload.replace(b'"event"', b'"event" ', 1)
        return httpx.post(url, content=payload, headers=headers, timeout=30)


def _make_handler(fake: FakeSendGrid):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def _reply(self, status: int, body: Any = None, headers: dict | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            raw = self._body()
            if self.path == "/v3/mail/batch" or \
                    self.path.startswith("/v3/user/scheduled_sends"):
                status, body = fake.handle_scheduled("POST", self.path,
                                                     self.headers.get("Authorization"), raw)
                self._reply(status, body)
            elif self.path == "/v3/mail/send":
                status, headers, body = fake.handle_send(self.headers.get("Authorization"),
                                                         raw)
                # the client may have given up (timeout): the message stays recorded
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._reply(status, body, headers)
            elif self.path == "/__fake__/faults":
                spec = json.loads(raw or b"{}")
                fake.inject(spec.get("status"), float(spec.get("delay", 0)),
                            int(spec.get("times", 1)), to=spec.get("to"),
                            path=spec.get("path"))
                self._reply(204)
            elif self.path == "/__fake__/events":
                spec = json.loads(raw or b"{}")
                events = fake.events_for(spec.get("kinds") or ["delivered"])
                r = fake.post_events(spec["url"], events)
                self._reply(200, {"posted": len(events), "status": r.status_code})
            else:
                self._reply(404, {"errors": [_sg_error(f"no route for POST {self.path}")]})

        def do_PATCH(self) -> None:  # noqa: N802
            raw = self._body()
            if self.path.startswith("/v3/user/scheduled_sends/"):
                status, body = fake.handle_scheduled("PATCH", self.path,
                                                     self.headers.get("Authorization"), raw)
                self._reply(status, body)
            else:
                self._reply(404)

        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/v3/user/scheduled_sends/"):
                status, body = fake.handle_scheduled("GET", self.path,
                                                     self.headers.get("Authorization"), b"")
                self._reply(status, body)
            elif self.path == "/__fake__/messages":
                self._reply(200, [{"message_id": m.message_id, "to": m.to,
                                   "custom_args": m.custom_args,
                                   "subject": m.body.get("subject"), "state": m.state,
                                   "send_at": m.send_at, "batch_id": m.batch_id}
                                  for m in fake.messages])
            elif self.path == "/__fake__/public-key":
                self._reply(200, {"public_key": fake.public_key})
            else:
                self._reply(404, {"errors": [_sg_error(f"no route for GET {self.path}")]})

        def do_DELETE(self) -> None:  # noqa: N802
            if self.path == "/__fake__/messages":
                fake.clear()
                self._reply(204)
            else:
                self._reply(404)

    return Handler
