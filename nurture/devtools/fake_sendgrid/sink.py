"""A lean Mail Send sink for throughput benchmarks: `python -m nurture.devtools.fake_sendgrid.sink`.

`FakeSendGrid` (a thread per connection, every body validated and recorded) is the functional
fake; at 100,000 messages a minute it would be the bottleneck. This sink is one asyncio
`Protocol` speaking just enough HTTP/1.1 (keep-alive, Content-Length bodies): `POST
/v3/mail/send` is answered 202 with an `X-Message-Id` after `--latency-ms` (a timer, no thread),
with SendGrid's `X-RateLimit-Limit/Remaining/Reset` headers (a fixed one-second window of
`--rate-limit` requests, 429 with `Retry-After` past it), and one body in
`--validate-every` is checked against the schema (`load_validator`). `GET /__sink__/stats`
answers its counters as JSON, with the process's CPU seconds (its ceiling per core is
requests / CPU second, whatever else the machine is doing). It prints `listening <port>` on
stdout once it accepts connections, so a parent process can start it and read the port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from nurture.devtools.fake_sendgrid.schema import load_validator, schema_errors

_REASONS = {200: b"OK", 202: b"Accepted", 404: b"Not Found", 429: b"Too Many Requests",
            400: b"Bad Request"}


class Sink:
    """Counters and policy shared by every connection of one sink."""

    def __init__(self, latency: float, rate_limit: int = 0, validate_every: int = 0,
                 schema: Path | None = None) -> None:
        self.latency = latency
        self.rate_limit = rate_limit
        self.validate_every = validate_every
        self.validator = load_validator(schema) if validate_every else None
        self.stats: dict[str, Any] = {"requests": 0, "accepted": 0, "throttled": 0,
                                      "validated": 0, "invalid": 0, "invalid_sample": [],
                                      "max_connections": 0, "connections": 0}
        self._window = 0
        self._used = 0

    def admit(self) -> tuple[int, dict[str, str]]:
        """Status and rate-limit headers for one send, in a fixed one-second window."""
        now = time.time()
        window = math.floor(now)
        if window != self._window:
            self._window, self._used = window, 0
        limit = self.rate_limit or 1_000_000
        self._used += 1
        headers = {"X-RateLimit-Limit": str(limit),
                   "X-RateLimit-Remaining": str(max(0, limit - self._used)),
                   "X-RateLimit-Reset": str(window + 1)}
        if self._used > limit:
            self.stats["throttled"] += 1
            headers["Retry-After"] = "1"
            return 429, headers
        self.stats["accepted"] += 1
        return 202, headers

    def check_sample(self, body: bytes) -> None:
        """Validate one body in `validate_every` against the schema."""
        if not self.validator or self.stats["accepted"] % self.validate_every:
            return
        self.stats["validated"] += 1
        try:
            errors = schema_errors(self.validator, json.loads(body))
        except ValueError as exc:
            errors = [{"message": f"not JSON: {exc}"}]
        if errors:
            self.stats["invalid"] += 1
            if len(self.stats["invalid_sample"]) < 5:
                self.stats["invalid_sample"].append(errors[:3])


class _Conn(asyncio.Protocol):
    """One keep-alive connection: parse requests as bytes arrive, answer each after the
    sink's latency (answers leave in request order: the delay is the same for all)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        st = self.sink.stats
        st["connections"] += 1
        st["max_connections"] = max(st["max_connections"], st["connections"])

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.stats["connections"] -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self._request(head[0].split(" "), body)

    def _request(self, line: list[str], body: bytes) -> None:
        sink = self.sink
        sink.stats["requests"] += 1
        method, path = line[0], line[1] if len(line) > 1 else "/"
        if method == "POST" and path == "/v3/mail/send":
            status, headers = sink.admit()
            if status == 202:
                sink.check_sample(body)
                headers["X-Message-Id"] = secrets.token_hex(11)
            payload = b"" if status == 202 else b'{"errors":[{"message":"too many requests"}]}'
        elif method == "GET" and path == "/__sink__/stats":
            stats = sink.stats | {"cpu_seconds": time.process_time()}
            status, headers, payload = 200, {}, json.dumps(stats).encode()
        else:
            status, headers, payload = 404, {}, b'{"errors":[{"message":"no route"}]}'
        head = [f"HTTP/1.1 {status} ".encode() + _REASONS.get(status, b"")]
        head += [f"{k}: {v}".encode() for k, v in headers.items()]
        head.append(f"Content-Length: {len(payload)}".encode())
        if payload:
            head.append(b"Content-Type: application/json")
        data = b"\r\n".join(head) + b"\r\n\r\n" + payload
        delay = sink.latency if path.startswith("/v3/") else 0.0
        asyncio.get_running_loop().call_later(delay, self._write, data)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def serve(sink: Sink, host: str = "127.0.0.1", port: int = 0,
                ready: Any = None) -> None:
    """Serve forever; `ready(port)` is called once the socket listens."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(sink), host, port, backlog=4096)
    if ready:
        ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    p.add_argument("--latency-ms", type=float, default=30.0, help="delay before each answer")
    p.add_argument("--rate-limit", type=int, default=0,
                   help="sends per one-second window before 429 (0: 1,000,000)")
    p.add_argument("--validate-every", type=int, default=0,
                   help="validate one body in N against the schema (0: none)")
    p.add_argument("--schema", type=Path, default=None,
                   help="JSON Schema or SendGrid's tsg_mail_v3.json (default: the fake's)")
    args = p.parse_args(argv)
    sink = Sink(args.latency_ms / 1000, args.rate_limit, args.validate_every, args.schema)

    def ready(port: int) -> None:
        print(f"listening {port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sink, args.host, args.port, ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
