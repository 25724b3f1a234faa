"""The SendGrid transport under load, over real HTTP on loopback: many requests in flight,
429s with `Retry-After` waited out and retried without ever sending a message twice,
`X-RateLimit-*` headers honoured before the limit is reached, and the benchmark's lean sink
(its own process) validating what it samples."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from nurture.adapters.delivery.sendgrid import RetryPolicy, SendGridTransport, build_mail
from nurture.core.config import Sender
from nurture.core.messages import Message
from nurture.devtools.fake_sendgrid import OWN_SCHEMA, FakeSendGrid

SENDER = Sender(from_email="news@example.com", from_name="Example",
                postal_address="1 Example Street, Springfield")


def messages(n: int) -> list[Message]:
    return [Message(touch_id=i, to_email=f"lead{i}@example.com", to_name=f"Lead {i}",
                    sender=SENDER, subject=f"Hello {i}", html=f"<p>Hello {i}</p>",
                    text=f"Hello {i}", unsubscribe_url=f"https://nurture.example/u/{i}",
                    send_at=datetime.now(UTC), campaign="c", step="s")
            for i in range(1, n + 1)]


def transport(url: str, key: str, concurrency: int, attempts: int = 6) -> SendGridTransport:
    # a generous timeout: these tests are about concurrency, 429s and auth, and on a loaded
    # CI machine one of 64 requests in flight once waited over 10 s for the fake's answer
    # (then rightly counted as in doubt, which is another test's subject)
    return SendGridTransport(key, url, timeout_seconds=60, concurrency=concurrency,
                             retry=RetryPolicy(attempts=attempts, base_seconds=0.01))


def assert_each_sent_once(fake: FakeSendGrid, deliveries, n: int) -> None:
    assert [d.touch_id for d in deliveries] == list(range(1, n + 1))  # in order
    assert all(d.ok for d in deliveries), [d.error for d in deliveries if not d.ok][:3]
    received = Counter(m.to for m in fake.messages)
    assert len(received) == n and set(received.values()) == {1}
    assert {d.message_id for d in deliveries} == {m.message_id for m in fake.messages}


def test_429_with_retry_after_is_waited_out_and_nothing_is_sent_twice():
    with FakeSendGrid(schema_path=OWN_SCHEMA) as fake:
        fake.inject(status=429, times=30, retry_after=0.2)
        t = transport(fake.url, fake.api_key, concurrency=16)
        try:
            deliveries = t.send_many(messages(40))
        finally:
            t.close()
        assert fake.throttled == 30
        assert t.gate.throttled == 30
        assert_each_sent_once(fake, deliveries, 40)
        assert fake.requests == 40 + 30


def test_rate_limit_headers_slow_sending_down_before_the_limit():
    with FakeSendGrid(schema_path=OWN_SCHEMA, rate_limit=10) as fake:
        t = transport(fake.url, fake.api_key, concurrency=4, attempts=1)
        try:
            first = t.send_many(messages(25)[:12])
            second = t.send_many(messages(25)[12:])  # same pool, same rate-limit state
        finally:
            t.close()
        # 25 sends at 10 per second: the gate waited for the window to reset instead of
        # running into the limit, so not one 429 (and no retry was even allowed)
        assert fake.throttled == 0
        assert t.gate.waits > 0
        assert_each_sent_once(fake, first + second, 25)


def test_many_in_flight_and_an_auth_failure_keeps_what_went_out():
    with FakeSendGrid(schema_path=OWN_SCHEMA, latency=0.05) as fake:
        t = transport(fake.url, fake.api_key, concurrency=64)
        try:
            deliveries = t.send_many(messages(300))
        finally:
            t.close()
        assert_each_sent_once(fake, deliveries, 300)

        bad = transport(fake.url, "SG.wrong", concurrency=64)
        from nurture.adapters.delivery.base import TransportAuthError

        try:
            with pytest.raises(TransportAuthError) as exc:
                bad.send_many(messages(10))
            assert exc.value.deliveries == []
            with pytest.raises(TransportAuthError):  # later calls stop at once
                bad.send_many(messages(1))
        finally:
            bad.close()
        assert len(fake.messages) == 300


def test_the_benchmark_sink_answers_with_rate_limits_and_validates_its_sample():
    proc = subprocess.Popen([sys.executable, "-m", "nurture.devtools.fake_sendgrid.sink",
                             "--latency-ms", "5", "--validate-every", "1",
                             "--rate-limit", "3", "--schema", str(OWN_SCHEMA)],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}"
        t = transport(url, "SG.any", concurrency=2)
        try:
            deliveries = t.send_many(messages(8))
        finally:
            t.close()
        assert all(d.ok and d.message_id for d in deliveries)
        with httpx.Client(base_url=url) as client:
            body = build_mail(messages(1)[0]) | {"subject": 42}  # not a string: invalid
            r = client.post("/v3/mail/send", json=body)
            assert r.status_code in (202, 429)
            assert r.headers["X-RateLimit-Limit"] == "3"
            stats = client.get("/__sink__/stats").json()
        assert stats["accepted"] == 8 + (r.status_code == 202)
        assert stats["validated"] == stats["accepted"]
        assert stats["invalid"] == (r.status_code == 202)
        assert stats["max_connections"] <= 3  # the transport's 2, kept alive, and ours
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_concurrency_setting_defaults_to_hundreds_in_flight_and_is_bounded(monkeypatch):
    from pydantic import ValidationError

    from nurture.settings import Settings
    from nurture.wiring import build_transport

    monkeypatch.delenv("NURTURE_SENDGRID_CONCURRENCY", raising=False)
    assert Settings().sendgrid_concurrency == 256
    monkeypatch.setenv("NURTURE_SENDGRID_CONCURRENCY", "512")
    settings = Settings(transport="sendgrid", sendgrid_api_key="SG.k")
    t = build_transport(settings)
    try:
        assert (t.concurrency, t.batch_size) == (512, 512)
    finally:
        t.close()
    monkeypatch.setenv("NURTURE_SENDGRID_CONCURRENCY", "4096")
    with pytest.raises(ValidationError):
        Settings()
