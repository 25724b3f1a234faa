"""The fake's HTTP face: routes each request to the `FakeSendGrid` it serves.

SendGrid's endpoints (`/v3/...`) go to the fake's `handle_*` methods; the `/__fake__/...`
control endpoints let the CLI inspect and steer a fake running in another process.
"""

from __future__ import annotations

import contextlib
import json
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from nurture.devtools.fake_sendgrid.schema import sg_error

SCHEDULED = "/v3/user/scheduled_sends"


class FakeSendGrid(Protocol):
    """What the handler asks of the fake it serves (`server.FakeSendGrid`)."""

    messages: list[Any]
    public_key: str

    def handle_scheduled(self, method: str, path: str, auth: str | None, raw: bytes
                         ) -> tuple[int, Any]: ...
    def handle_send(self, auth: str | None, raw: bytes) -> tuple[int, dict, dict | None]: ...
    def inject(self, status: int | None = None, delay: float = 0.0, times: int = 1,
               *args: Any) -> None: ...
    def events_for(self, kinds: list[str], *args: Any) -> list[dict]: ...
    def post_events(self, url: str, events: list[dict], *args: Any) -> Any: ...
    def clear(self) -> None: ...


def make_handler(fake: FakeSendGrid) -> type[BaseHTTPRequestHandler]:
    """A request-handler class bound to `fake` (the stdlib server builds one per request)."""

    class Handler(_Handler):
        pass

    Handler.fake = fake
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    fake: FakeSendGrid

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

    def _scheduled(self, method: str, raw: bytes) -> None:
        status, body = self.fake.handle_scheduled(method, self.path,
                                                  self.headers.get("Authorization"), raw)
        self._reply(status, body)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        raw = self._body()
        if self.path == "/v3/mail/batch" or self.path.startswith(SCHEDULED):
            self._scheduled("POST", raw)
        elif self.path == "/v3/mail/send":
            self._send(raw)
        elif self.path == "/__fake__/faults":
            self._inject(json.loads(raw or b"{}"))
        elif self.path == "/__fake__/events":
            self._post_events(json.loads(raw or b"{}"))
        else:
            self._reply(404, {"errors": [sg_error(f"no route for POST {self.path}")]})

    def _send(self, raw: bytes) -> None:
        status, headers, body = self.fake.handle_send(self.headers.get("Authorization"), raw)
        # the client may have given up (timeout): the message stays recorded
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._reply(status, body, headers)

    def _inject(self, spec: dict) -> None:
        self.fake.inject(spec.get("status"), float(spec.get("delay", 0)),
                         int(spec.get("times", 1)), to=spec.get("to"), path=spec.get("path"),
                         retry_after=float(spec.get("retry_after", 0)))
        self._reply(204)

    def _post_events(self, spec: dict) -> None:
        events = self.fake.events_for(spec.get("kinds") or ["delivered"])
        r = self.fake.post_events(spec["url"], events)
        self._reply(200, {"posted": len(events), "status": r.status_code})

    def do_PATCH(self) -> None:  # noqa: N802
        raw = self._body()
        if self.path.startswith(SCHEDULED + "/"):
            self._scheduled("PATCH", raw)
        else:
            self._reply(404)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith(SCHEDULED + "/"):
            self._scheduled("GET", b"")
        elif self.path == "/__fake__/messages":
            self._reply(200, [m.summary() for m in self.fake.messages])
        elif self.path == "/__fake__/public-key":
            self._reply(200, {"public_key": self.fake.public_key})
        else:
            self._reply(404, {"errors": [sg_error(f"no route for GET {self.path}")]})

    def do_DELETE(self) -> None:  # noqa: N802
        if self.path == "/__fake__/messages":
            self.fake.clear()
            self._reply(204)
        else:
            self._reply(404)
