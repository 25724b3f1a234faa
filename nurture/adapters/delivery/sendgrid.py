"""The `sendgrid` transport: v3 Mail Send over one pooled HTTP client.

Bodies are what the sendgrid library's `Mail` helpers build (SendGrid's own SDK; a test
holds the two equal), built directly; the HTTP is ours because the SDK's client has no
timeout and opens a connection per request. Each message is one request; hundreds are in
flight at once over pooled keep-alive connections (aiohttp on a dedicated event-loop
thread), through a gate that honours SendGrid's `X-RateLimit-*` headers before the limit
is reached (`rate_gate`).

Outcomes, per SendGrid's guidance:
- 202 -> sent; the `X-Message-Id` header is kept (every event's `sg_message_id` starts
  with it).
- 429, 5xx, connection failures, connect timeouts -> retried with exponential backoff
  and full jitter (a random wait between 0 and base x 2^n, capped: `RetryPolicy.delay`), or
  after exactly the wait SendGrid asks for (`Retry-After` / `X-RateLimit-Reset`, capped; a 429
  pauses every request in flight, not just its own);
  still failing after the last attempt -> a retryable failure: the ledger plans the touch
  again for a later run (`nurture.core.ledger`).
- A read timeout (the request reached SendGrid, no answer came) is retried only when the
  request provably did not reach the API: otherwise the outcome is *unknown*. SendGrid has no
  idempotency key, so resending could email the lead twice; the touch is left `unknown` and
  settled by the Event Webhook (`processed`/`delivered` carry our touch id).
- 400/413 -> the touch fails with SendGrid's error text; never retried.
- 401/403 -> `TransportAuthError`: the send phase stops, unsent touches stay planned.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aiohttp
import orjson

from nurture.adapters.delivery.base import Delivery, TransportAuthError
from nurture.adapters.delivery.loop_thread import LoopThread
from nurture.adapters.delivery.rate_gate import RateGate
from nurture.core.messages import Message

MAX_CATEGORY = 255
_T = TypeVar("_T")


def build_mail(msg: Message, sandbox: bool = False, now: datetime | None = None) -> dict:
    """The v3 Mail Send request body for one message (custom_args on the personalization:
    that is where per-recipient ids belong, and what the official schema types as an
    object). The same body the SDK's `Mail` helpers build (a test holds the two equal),
    built directly: the helpers cost more CPU per message than the HTTP request does."""
    to = {"email": msg.to_email}
    if msg.to_name:
        to["name"] = msg.to_name
    sender = {"email": msg.sender.from_email}
    if msg.sender.from_name:
        sender["name"] = msg.sender.from_name
    p: dict = {"to": [to],
               "headers": {"List-Unsubscribe": f"<{msg.unsubscribe_url}>",
                           "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
               "custom_args": {k: str(v) for k, v in msg.custom_args.items()}}
    now = now or datetime.now(UTC)
    if msg.send_at > now + timedelta(seconds=60):
        p["send_at"] = int(msg.send_at.timestamp())
    body: dict = {"from": sender, "subject": msg.subject, "personalizations": [p],
                  "content": [{"type": "text/plain", "value": msg.text},
                              {"type": "text/html", "value": msg.html}]}
    categories = list(dict.fromkeys(c[:MAX_CATEGORY] for c in msg.categories[:10]))
    if categories:
        body["categories"] = categories
    if msg.sender.reply_to:
        body["reply_to"] = {"email": msg.sender.reply_to}
    if sandbox:
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return body


def error_text(status: int, text: str) -> str:
    """SendGrid's own error messages (`{"errors": [{"message", "field"}]}`), else the body."""
    try:
        body = json.loads(text)
        errors = body.get("errors") or []
        parts = [(f"{e.get('field')}: " if e.get("field") else "") + str(e.get("message"))
                 for e in errors if isinstance(e, dict)]
        if parts:
            return f"SendGrid {status}: " + "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    return f"SendGrid {status}: {text[:500]}"


@dataclass
class RetryPolicy:
    attempts: int = 5           # first try + 4 retries
    base_seconds: float = 0.5   # backoff: random(0, base * 2**n), capped
    cap_seconds: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap_seconds)
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** attempt))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        reset = headers.get("X-RateLimit-Reset")
        if reset and reset.isdigit():
            return max(0.0, int(reset) - time.time())
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Failed:
    """An attempt that did not settle the message: why, the wait SendGrid asked for (429),
    and whether another attempt may help."""

    error: str
    wait: float | None = None
    retry: bool = True



@dataclass(frozen=True, slots=True)
class _Answer:
    """One HTTP answer, read in full (so its keep-alive connection goes back to the pool)."""

    status: int
    headers: Mapping[str, str]
    text: str


def _batch_id_of(answer: _Answer) -> str | None:
    """The non-empty `batch_id` string of a batch-creation answer, else None."""
    try:
        batch_id = json.loads(answer.text)["batch_id"]
    except (ValueError, KeyError, TypeError):
        return None
    return batch_id if isinstance(batch_id, str) and batch_id else None


class SendGridTransport:
    """The Transport port over aiohttp on a dedicated event-loop thread.

    `send_many` is synchronous (the port), but its messages go out `concurrency` at a time
    over keep-alive connections owned by one long-lived loop, so connections, the semaphore
    and the rate-limit state persist across calls. aiohttp, not httpx: httpcore's pool
    rescans every connection per request, and measured on this project's benchmark
    (benchmarks/sendgrid_delivery.py) it topped out well under the 1,667 sends/s needed."""

    name = "sendgrid"

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com",
                 timeout_seconds: float = 10.0, concurrency: int = 256, sandbox: bool = False,
                 retry: RetryPolicy | None = None, batch_size: int | None = None) -> None:
        if not api_key:
            raise ValueError("a SendGrid API key is required")
        self.host = host.rstrip("/")
        self.sandbox = sandbox
        self.retry = retry or RetryPolicy()
        self.concurrency = max(1, concurrency)
        # the send phase's batch: by default all of it in flight at once, so a kill -9
        # leaves at most `concurrency` touches in doubt
        self.batch_size = max(1, batch_size or self.concurrency)
        self.gate = RateGate(max_wait=self.retry.cap_seconds)
        self._headers = {"Authorization": f"Bearer {api_key}",
                         "Content-Type": "application/json",
                         "User-Agent": "nurture (+https://github.com/nurture)"}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds,
                                              sock_connect=min(5.0, timeout_seconds))
        self._loop = LoopThread("sendgrid")
        self._session: aiohttp.ClientSession | None = None
        self._auth_error = ""

    def _session_now(self) -> aiohttp.ClientSession:
        """The pooled session, created on the loop thread at first use."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.concurrency,
                                             limit_per_host=self.concurrency,
                                             keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=connector, timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def _post(self, path: str, data: bytes | None = None) -> _Answer:
        """One POST through the rate gate, the answer read in full."""
        await self.gate.enter()
        headers = None
        try:
            async with self._session_now().post(self.host + path, data=data) as response:
                headers = response.headers
                return _Answer(response.status, headers, await response.text())
        finally:
            self.gate.leave(headers)

    # -- one message -------------------------------------------------------------------
    async def _send_one(self, msg: Message) -> Delivery:
        if self._auth_error:
            return Delivery(msg.touch_id, False, error="not sent: " + self._auth_error,
                            unknown=False)
        body = build_mail(msg, self.sandbox)
        batch_id: str | None = None
        if body["personalizations"][0].get("send_at"):
            scheduled = await self._scheduled_batch_id(msg)
            if isinstance(scheduled, Delivery):
                return scheduled
            batch_id = body["batch_id"] = scheduled
        data = orjson.dumps(body)  # compact UTF-8 JSON, ~10x faster than json.dumps
        outcome = await self._with_retries(lambda: self._mail_attempt(msg, data, batch_id))
        if isinstance(outcome, _Failed):
            return Delivery(msg.touch_id, False, retryable=True,
                            error=f"{outcome.error} (gave up after {self.retry.attempts} "
                                  "attempts in this run)")
        return outcome

    async def _with_retries(self, attempt_once: Callable[[], Awaitable[_T | _Failed]]
                            ) -> _T | _Failed:
        """Up to `retry.attempts` calls of `attempt_once`, sleeping `retry.delay` between
        them (the wait SendGrid asked for, if the last failure carried one). Returns the
        first outcome that is not a retryable `_Failed`, else the last failure."""
        last = _Failed("")
        for attempt in range(self.retry.attempts):
            if attempt:
                await asyncio.sleep(self.retry.delay(attempt - 1, last.wait))
            outcome = await attempt_once()
            if not isinstance(outcome, _Failed) or not outcome.retry:
                return outcome
            last = outcome
        return last

    async def _scheduled_batch_id(self, msg: Message) -> str | Delivery:
        """A batch id for a scheduled send, or the failed Delivery when none could be had.

        SendGrid holds a scheduled send up to 72 h; only its batch id lets an unsubscribe
        that arrives meanwhile cancel it (POST /v3/user/scheduled_sends). Creating an id
        sends nothing, so every failure is safe to retry; without one, nothing is sent."""
        outcome = await self._with_retries(lambda: self._batch_attempt(msg))
        if isinstance(outcome, _Failed):
            return Delivery(msg.touch_id, False, error=f"not sent: no SendGrid batch id "
                            f"for the scheduled send, so it could not be cancelled later "
                            f"({outcome.error})")
        return outcome

    async def _batch_attempt(self, msg: Message) -> str | Delivery | _Failed:
        """One POST /v3/mail/batch: the new id, an auth failure, or why not (retryable
        unless SendGrid refused the request itself)."""
        try:
            answer = await self._post("/v3/mail/batch")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _Failed(f"could not reach SendGrid ({type(exc).__name__}: {exc})")
        status = answer.status
        if status in (200, 201):
            return _batch_id_of(answer) or _Failed(
                f"SendGrid answered {status} without a batch_id")
        if status in (401, 403):
            self._auth_error = error_text(status, answer.text) + " (creating a batch id " \
                "for a scheduled send needs the Mail Send permission)"
            return Delivery(msg.touch_id, False, error=self._auth_error)
        return self._failed(answer)

    def _failed(self, answer: _Answer) -> _Failed:
        """A non-success answer that settles nothing: 429 (pausing every sender for the wait
        SendGrid asks) and 5xx may be retried, anything else may not."""
        status, error = answer.status, error_text(answer.status, answer.text)
        if status == 429:
            wait = _retry_after(answer.headers)
            self.gate.pause(self.retry.delay(0) if wait is None else wait)
            return _Failed(error, wait)
        return _Failed(error, retry=status >= 500)

    async def _mail_attempt(self, msg: Message, data: bytes, batch_id: str | None
                            ) -> Delivery | _Failed:
        """One POST /v3/mail/send: a final Delivery, or a `_Failed` that is safe to retry
        (the request never reached SendGrid, or it answered 429/5xx)."""
        try:
            answer = await self._post("/v3/mail/send", data)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # the connection was never made, so the request never left: safe to retry
            return _Failed(f"could not reach SendGrid ({type(exc).__name__}: {exc})")
        except TimeoutError as exc:
            return Delivery(msg.touch_id, False, unknown=True, batch_id=batch_id,
                            error=f"no answer from SendGrid within the timeout "
                            f"({type(exc).__name__}); it may have been accepted, so it "
                            "is not resent: the Event Webhook settles it")
        except aiohttp.ClientError as exc:
            # the connection broke mid-request: SendGrid may or may not have it
            return Delivery(msg.touch_id, False, unknown=True, batch_id=batch_id,
                            error=f"connection to SendGrid failed mid-request "
                            f"({type(exc).__name__}: {exc}); not resent")
        status = answer.status
        if status in (200, 202):
            return Delivery(msg.touch_id, True, answer.headers.get("X-Message-Id"),
                            batch_id=batch_id)
        if status in (401, 403):
            self._auth_error = error_text(status, answer.text)
            return Delivery(msg.touch_id, False, error=self._auth_error)
        if status == 429 or status >= 500:
            return self._failed(answer)
        return Delivery(msg.touch_id, False, error=error_text(status, answer.text))

    async def _send_all(self, messages: list[Message]) -> list[Delivery]:
        """All messages, `concurrency` in flight: that many workers take the next message
        (bounded memory however long the list), results kept in the messages' order."""
        results: list[Delivery | None] = [None] * len(messages)
        queue = iter(enumerate(messages))

        async def worker() -> None:
            for i, msg in queue:
                results[i] = await self._send_one(msg)

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency,
                                                              len(messages)))))
        return results  # type: ignore[return-value]  # every slot filled by a worker

    # -- the Transport interface ----------------------------------------------------------
    def send_many(self, messages: list[Message]) -> list[Delivery]:
        if self._auth_error:
            raise TransportAuthError(self._auth_error)
        results = self._loop.run(self._send_all(messages))
        if self._auth_error:
            # report what did go out; the caller returns the rest to `planned`
            raise TransportAuthError(
                f"SendGrid refused the API key ({self._auth_error}); the send phase "
                "stopped and unsent touches stay planned",
                [d for d in results if d.ok or d.unknown])
        return results

    def reconcile(self, touch_ids: list[int]) -> dict[int, str | None]:
        # SendGrid cannot be asked "did you get touch N?" (no idempotency key or lookup
        # without the paid Email Activity API): leave them unknown for the webhook to settle.
        return {}

    def close(self) -> None:
        if self._session is not None:
            self._loop.run(self._session.close())
            self._session = None
        self._loop.stop()
