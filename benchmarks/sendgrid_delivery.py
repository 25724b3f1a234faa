"""Benchmark: SendGrid delivery and Event Webhook ingestion over loopback.

    python benchmarks/sendgrid_delivery.py --messages 2000 --events 20000

1. The same N rendered messages sent to the fake SendGrid (a real HTTP server on loopback,
   its own process) by the engine's `sendgrid` transport (pooled connections, bounded
   concurrency) and by one-by-one `SendGridAPIClient.send` calls (the SDK's own way: a new
   connection per request). The fake answers after `--latency-ms` (default 30, a typical
   round trip to the real API) and validates every body against nurture's own Mail Send
   schema (or `$NURTURE_FAKE_SENDGRID_SCHEMA`) unless `--no-validate`.
2. Event Webhook batches (signed, 1000 events each, SendGrid's maximum batch shape) posted to
   the nurture app served by uvicorn on loopback, against a fresh SQLite database with the
   touches they refer to: events ingested per second (verify, store raw, dedupe, apply).

Prints ONE JSON line. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_messages(n: int):
    from nurture.core.messages import build_message
    from nurture.core.rendering import Renderer
    from nurture.core.unsubscribe import make_token, unsubscribe_url
    from nurture.services.validation import load_valid_config

    config = load_valid_config(ROOT / "campaigns", ROOT / "templates")
    renderer = Renderer(ROOT / "templates")
    campaign = next(c for c in config.campaigns if c.name == "inbound-saas")
    track = campaign.tracks[0]
    out = []
    for i in range(n):
        step = track.steps[i % len(track.steps)]
        lead = {"email": f"lead{i}@example.com", "first_name": f"Lead{i}", "last_name": "Doe",
                "company": "Example Corp", "industry": "software", "title": None,
                "company_size": 50, "country": "US", "timezone": "UTC", "source": "website",
                "utm_source": None, "utm_medium": None, "utm_campaign": None,
                "created_at": None}
        url = unsubscribe_url("https://nurture.example", make_token("k" * 32, lead["email"],
                                                                    campaign.name, i + 1))
        rendered = renderer.render(campaign, track, step, None, lead, url)
        out.append(build_message(i + 1, lead, campaign.sender, rendered, url,
                                 datetime.now(UTC), campaign.name, step.id, None))
    return out


def bench_send(messages, validate: bool, concurrency: int, latency_ms: float = 0.0) -> dict:
    """The fake runs in its own process (as SendGrid would be elsewhere), so client and
    server do not share one interpreter lock."""
    import subprocess

    import httpx
    from sendgrid import SendGridAPIClient

    from nurture.adapters.delivery.sendgrid import SendGridTransport, build_mail

    out: dict = {"messages": len(messages), "schema_validation": validate,
                 "concurrency": concurrency, "latency_ms": latency_ms}
    port = _free_port()
    key = "SG.bench-key"
    cmd = [sys.executable, "-m", "nurture", "fake-sendgrid", "--port", str(port),
           "--api-key", key, "--latency-ms", str(latency_ms)] + (
               [] if validate else ["--no-schema"])  # the fake's default schema
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/__fake__/messages", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        transport = SendGridTransport(key, url, concurrency=concurrency)
        t0 = time.perf_counter()
        results = transport.send_many(messages)
        dt = time.perf_counter() - t0
        transport.close()
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
        out["engine_seconds"] = round(dt, 3)
        out["engine_per_s"] = round(len(messages) / dt, 1)
        log(f"engine transport: {out['engine_per_s']}/s")

        client = SendGridAPIClient(key, host=url)
        bodies = [build_mail(m) for m in messages]  # same bodies; SDK sends them one by one
        t0 = time.perf_counter()
        for body in bodies:
            r = client.send(body)
            assert r.status_code == 202
        dt = time.perf_counter() - t0
        out["sdk_one_by_one_seconds"] = round(dt, 3)
        out["sdk_one_by_one_per_s"] = round(len(messages) / dt, 1)
        log(f"SDK one by one: {out['sdk_one_by_one_per_s']}/s")
        out["speedup"] = round(out["engine_per_s"] / out["sdk_one_by_one_per_s"], 2)
        accepted = len(httpx.get(f"{url}/__fake__/messages", timeout=30).json())
        out["accepted_by_fake"] = accepted
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_webhook(n_events: int, batch_size: int, work: Path) -> dict:
    import httpx
    import uvicorn
    from sqlalchemy import insert

    from nurture.devtools.fake_sendgrid import FakeSendGrid, Recorded
    from nurture.entrypoints.http.app import create_app
    from nurture.settings import Settings
    from nurture.store import tables as t
    from nurture.store.db import upgrade
    from nurture.wiring import App

    fake = FakeSendGrid(validate=False)  # only its signing key and event shapes are used
    settings = Settings(database_url=f"sqlite:///{work / 'hook.db'}",
                        campaigns_dir=ROOT / "campaigns", templates_dir=ROOT / "templates",
                        sendgrid_webhook_public_key=fake.public_key)
    app = App(settings)
    upgrade(app.engine)
    n_touches = max(1, n_events // 4)
    now = datetime.now(UTC)
    with app.engine.begin() as conn:
        conn.execute(insert(t.leads), [{
            "email": f"lead{i}@example.com", "attributes": {}, "created_at": now,
            "updated_at": now, "lifecycle_stage": "nurturing", "stage_entered_at": now,
            "recycle_count": 0} for i in range(n_touches)])
        conn.execute(insert(t.touches), [{
            "lead_id": i + 1, "campaign": "inbound-saas", "track": "education",
            "step": "buyers-guide", "round": 0, "status": "sent", "planned_at": now,
            "send_at": now - timedelta(minutes=5), "sent_at": now - timedelta(minutes=5),
            "provider_message_id": f"msg{i}", "updated_at": now}
            for i in range(n_touches)])
    recs = [Recorded(f"msg{i}", {"personalizations": [{
        "to": [{"email": f"lead{i}@example.com"}],
        "custom_args": {"touch_id": str(i + 1), "campaign": "inbound-saas",
                        "step": "buyers-guide"}}], "categories": ["campaign:inbound-saas"]},
        time.time() - 300) for i in range(n_touches)]
    events = fake.events_for(["delivered", "open", "machine_open", "click"], recs)[:n_events]
    batches = [events[i:i + batch_size] for i in range(0, len(events), batch_size)]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(app), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}/webhooks/sendgrid"
    try:
        t0 = time.perf_counter()
        for b in batches:
            r = fake.post_events(url, b)
            assert r.status_code == 200 and r.json()["applied"], r.text
        dt = time.perf_counter() - t0
        t1 = time.perf_counter()
        for b in batches[: max(1, len(batches) // 4)]:  # SendGrid retries: duplicates
            r = fake.post_events(url, b)
            assert r.json()["new"] == 0
        dup_dt = time.perf_counter() - t1
        dup_n = sum(len(b) for b in batches[: max(1, len(batches) // 4)])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.engine.dispose()
    log(f"webhook: {len(events) / dt:.0f} events/s")
    _ = httpx  # imported for the fake's client
    return {"events": len(events), "batch_size": batch_size, "seconds": round(dt, 3),
            "events_per_s": round(len(events) / dt, 1),
            "duplicate_events_per_s": round(dup_n / dup_dt, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Prints one JSON line; progress goes to stderr.")
    p.add_argument("--messages", type=int, default=2000, help="messages to send (default 2000)")
    p.add_argument("--events", type=int, default=20000, help="webhook events (default 20000)")
    p.add_argument("--batch-size", type=int, default=1000, help="events per webhook POST")
    p.add_argument("--concurrency", type=int, default=8, help="engine transport concurrency")
    p.add_argument("--no-validate", action="store_true",
                   help="the fake skips schema validation (measure the clients alone)")
    p.add_argument("--latency-ms", type=float, default=30.0,
                   help="the fake's delay per answer, as across the internet (default 30; "
                        "0 measures loopback alone, where the fake itself is the limit)")
    args = p.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.path.insert(0, str(ROOT))
    from nurture.devtools.fake_sendgrid import default_schema_path

    schema = default_schema_path()
    if not schema.is_file() and not args.no_validate:
        p.error(f"SendGrid schema not found at {schema}; pass --no-validate")
    log(f"rendering {args.messages} messages")
    messages = make_messages(args.messages)
    send = bench_send(messages, not args.no_validate, args.concurrency, args.latency_ms)
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        hook = bench_webhook(args.events, args.batch_size, Path(tmp))
    print(json.dumps({"send": send, "webhook": hook}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
