"""The fake SendGrid itself: what it records, the faults it plays, the events it posts.

`FakeSendGrid` answers `POST /v3/mail/send` (bearer key, schema and limits checked, 202 with an
`X-Message-Id`), the batch and scheduled-send endpoints, and signs Event Webhook batches with
its own ECDSA key. Its HTTP routing lives in `handler.py`, the event shapes in `events.py`.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nurture.devtools.fake_sendgrid.events import build_event, check_kind
from nurture.devtools.fake_sendgrid.handler import SCHEDULED, make_handler
from nurture.devtools.fake_sendgrid.records import Fault, Recorded
from nurture.devtools.fake_sendgrid.schema import (
    limit_errors,
    load_validator,
    schema_errors,
    sg_error,
)

_BAD_KEY = "The provided authorization grant is invalid, expired, or revoked"


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
    # SendGrid's rate limit: at most this many sends per one-second window (0: no limit);
    # every send answer then carries `X-RateLimit-Limit/Remaining/Reset`, and a send past
    # the limit gets 429 with `Retry-After`. `throttled` counts every 429 answered.
    rate_limit: int = 0
    throttled: int = 0

    def __post_init__(self) -> None:
        self._validator = load_validator(self.schema_path) if self.validate else None
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._server: ThreadingHTTPServer | None = None
        self.batches: dict[str, str | None] = {}  # batch id -> scheduled-send status
        self._thread: threading.Thread | None = None
        self._rng = random.Random(self.fault_seed)
        self._window = (0, 0)  # (window start, sends counted in it)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> FakeSendGrid:
        handler = make_handler(self)
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
               to: str | None = None, path: str | None = None,
               retry_after: float = 0.0) -> None:
        """Queue `times` faults, consumed by the next matching requests in order (a 429
        asks the client to wait `retry_after` seconds)."""
        with self._lock:
            for _ in range(times):
                self._faults.append(Fault(status, delay, to, path, retry_after))

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

    def _play_fault(self, to: str | None, path: str | None = None) -> Fault | None:
        """The next fault for this request, its delay already slept; None when it has no
        status to answer with (the request then goes on)."""
        fault = self._next_fault(to, path)
        if fault and fault.delay:
            time.sleep(fault.delay)
        return fault if fault and fault.status else None

    def _admit(self, auth: str | None) -> bool:
        """Count the request, add the configured latency, and check the bearer key."""
        with self._lock:
            self.requests += 1
        if self.latency:
            time.sleep(self.latency)
        return auth == f"Bearer {self.api_key}"

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
        if not self._admit(auth):
            return 401, {}, {"errors": [sg_error(_BAD_KEY)]}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        try:
            to = body["personalizations"][0]["to"][0]["email"]
        except (KeyError, IndexError, TypeError):
            to = None
        limits, over = self._rate_window()
        if over:
            return self._throttle(limits | {"Retry-After": "1"})
        fault = self._play_fault(to)
        if fault and fault.status == 429:
            return self._throttle(limits | {"Retry-After": f"{fault.retry_after:g}"})
        if fault:
            message = {400: "Bad Request (injected)"}.get(fault.status,
                                                           "internal server error (injected)")
            return fault.status, limits, {"errors": [sg_error(message)]}
        if body is None:
            return 400, {}, {"errors": [sg_error("Bad Request: the body is not valid JSON")]}
        status, headers, answer = self._accept(body)
        return status, limits | headers, answer

    def _rate_window(self) -> tuple[dict, bool]:
        """SendGrid's rate-limit headers for one send, and whether it is past the limit."""
        if not self.rate_limit:
            return {}, False
        with self._lock:
            window = int(time.time())
            start, used = self._window
            used = used + 1 if start == window else 1
            self._window = (window, used)
        return {"X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(0, self.rate_limit - used)),
                "X-RateLimit-Reset": str(window + 1)}, used > self.rate_limit

    def _throttle(self, headers: dict) -> tuple[int, dict, dict]:
        with self._lock:
            self.throttled += 1
        return 429, headers, {"errors": [sg_error("too many requests")]}

    def _accept(self, body: Any) -> tuple[int, dict, dict | None]:
        """Record a well-formed send (202 with its message id), or reject it (400)."""
        errors = self.check(body)
        if not errors and isinstance(body, dict) and "batch_id" in body \
                and body["batch_id"] not in self.batches:
            errors = [sg_error("invalid batch id", "batch_id")]
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
        errors = [] if self._validator is None else schema_errors(self._validator, body)
        if errors or not isinstance(body, dict):
            return errors
        return limit_errors(body)

    # -- batches and scheduled sends ----------------------------------------------------
    def handle_scheduled(self, method: str, path: str, auth: str | None, raw: bytes
                         ) -> tuple[int, dict | list | None]:
        """`POST /v3/mail/batch` and the `/v3/user/scheduled_sends` family."""
        if not self._admit(auth):
            return 401, {"errors": [sg_error(_BAD_KEY)]}
        route = SCHEDULED if path.startswith(SCHEDULED) else path
        fault = self._play_fault(None, route)
        if fault:
            return fault.status, {"errors": [sg_error("injected fault")]}
        if method == "POST" and path == "/v3/mail/batch":
            return self._new_batch()
        try:
            spec = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {"errors": [sg_error("invalid JSON")]}
        if method == "POST" and path == SCHEDULED:
            batch_id, status = spec.get("batch_id"), spec.get("status")
            if status not in ("cancel", "pause"):
                return 400, {"errors": [sg_error("status must be cancel or pause", "status")]}
            return self._set_status(batch_id, status, new=True)
        batch_id = path.rsplit("/", 1)[-1]
        if method == "GET":
            status = self.batches.get(batch_id)
            return 200, ([{"batch_id": batch_id, "status": status}] if status else [])
        if method == "PATCH":
            return self._patch_status(batch_id, spec.get("status"))
        return 404, {"errors": [sg_error(f"no route for {method} {path}")]}

    def _new_batch(self) -> tuple[int, dict]:
        batch_id = secrets.token_urlsafe(24)
        with self._lock:
            self.batches[batch_id] = None
        return 201, {"batch_id": batch_id}

    def _patch_status(self, batch_id: str, status: Any) -> tuple[int, dict | None]:
        if self.batches.get(batch_id) is None:
            return 404, {"errors": [sg_error("batch id not found")]}
        code, body = self._set_status(batch_id, status, new=False)
        return (204, None) if code == 201 else (code, body)

    def _set_status(self, batch_id: Any, status: str, new: bool) -> tuple[int, dict]:
        with self._lock:
            if batch_id not in self.batches:
                return 400, {"errors": [sg_error("invalid batch id", "batch_id")]}
            if new and self.batches[batch_id] is not None:
                return 400, {"errors": [sg_error("batch id already has a status",
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
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def sign(self, payload: bytes, timestamp: str) -> str:
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
                check_kind(kind)
                out.append(build_event(rec, kind, base_ts, seconds_after))
        return out

    def post_events(self, url: str, events: list[dict], tamper: bool = False,
                    timestamp: str | None = None, sign: bool = True) -> httpx.Response:
        """POST one signed batch, exactly as SendGrid would; returns the httpx response."""
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
