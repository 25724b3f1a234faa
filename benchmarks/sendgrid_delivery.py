"""Benchmark: SendGrid delivery end to end (render, send, record) against a loopback sink.

    python benchmarks/sendgrid_delivery.py --messages 20000

1. A lean asyncio sink (`nurture.devtools.fake_sendgrid.sink`, its own process) answers
   `POST /v3/mail/send` 202 after `--latency-ms` (default 30, a round trip to the real API),
   with SendGrid's `X-RateLimit-*` headers, and validates one body in `--validate-every`
   against the Mail Send schema (`$NURTURE_SENDGRID_SCHEMA`/tsg_mail_v3.json, SendGrid's
   official OpenAPI description, when set; else nurture's own).
2. The sink's own ceiling: a raw asyncio load generator (`--ceiling-connections` keep-alive
   connections, no HTTP library) for `--ceiling-seconds`, and the requests the sink answers
   per CPU second it used (its ceiling on one free core, whatever else the machine runs).
   It must be at least twice the target (2 x 1,667/s), or the sink, not the engine, would
   be what is measured.
3. End to end: a fresh SQLite database with N due touches, sent by the real send path
   (`nurture.services.sending.send_chunk`: claim a batch, render, send with the `sendgrid`
   transport, record) — messages/minute, per-batch latency, phase seconds, peak RSS.
4. Transport alone: `send_many` over the same number of pre-rendered messages.

Event Webhook ingestion moved to benchmarks/webhook_ingest.py.

Human-readable figures go to stderr; `--json` prints ONE JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_PER_MIN = 100_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- the sink and its ceiling -----------------------------------------------------------------
def start_sink(latency_ms: float, validate_every: int, schema: Path | None,
               rate_limit: int) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "nurture.devtools.fake_sendgrid.sink",
           "--latency-ms", str(latency_ms), "--validate-every", str(validate_every),
           "--rate-limit", str(rate_limit)] + (["--schema", str(schema)] if schema else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("listening"):
        proc.kill()
        raise SystemExit(f"the sink did not start: {line!r}")
    return proc, int(line.split()[1])


def sink_stats(port: int) -> dict:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/__sink__/stats", timeout=10).json()


async def _load_conn(port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.perf_counter() < deadline:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await reader.readexactly(length)
        counts[0] += 1
    writer.close()


def sink_ceiling(port: int, connections: int, seconds: float) -> float:
    """Requests/s the sink answers to a lean raw-socket client (a lower bound of its
    ceiling: the client shares the machine). Bodies are a typical message's size."""
    body = json.dumps({"personalizations": [{"to": [{"email": "x@example.com"}]}],
                       "from": {"email": "a@example.com"}, "subject": "s",
                       "content": [{"type": "text/plain", "value": "x" * 3000}]}).encode()
    request = (b"POST /v3/mail/send HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json"
               b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def run() -> float:
        counts = [0]
        t0 = time.perf_counter()
        await asyncio.gather(*(_load_conn(port, request, t0 + seconds, counts)
                               for _ in range(connections)))
        return counts[0] / (time.perf_counter() - t0)

    return asyncio.run(run())


# -- end to end: the real send path ---------------------------------------------------------
def build_store(work: Path, n: int):
    """A migrated SQLite database with `n` leads, each with one due planned touch."""
    from sqlalchemy import insert

    from nurture.settings import Settings
    from nurture.store import tables as t
    from nurture.store.db import upgrade
    from nurture.wiring import App

    settings = Settings(database_url=f"sqlite:///{work / 'send.db'}",
                        campaigns_dir=ROOT / "campaigns", templates_dir=ROOT / "templates")
    app = App(settings)
    upgrade(app.engine)
    campaign = next(c for c in app.config.campaigns if c.name == "inbound-saas")
    track = campaign.tracks[0]
    now = datetime.now(UTC)
    with app.engine.begin() as conn:
        for lo in range(0, n, 10_000):
            ids = range(lo, min(n, lo + 10_000))
            conn.execute(insert(t.leads), [{
                "email": f"lead{i}@example.com", "first_name": f"Lead{i}", "last_name": "Doe",
                "company": "Example Corp", "industry": "software", "company_size": 50,
                "country": "US", "timezone": "UTC", "source": "website", "attributes": {},
                "created_at": now, "updated_at": now, "lifecycle_stage": "nurturing",
                "stage_entered_at": now, "recycle_count": 0} for i in ids])
            conn.execute(insert(t.touches), [{
                "lead_id": i + 1, "campaign": campaign.name, "track": track.name,
                "step": track.steps[i % len(track.steps)].id, "round": 0, "status": "planned",
                "planned_at": now, "send_at": now - timedelta(minutes=1), "updated_at": now}
                for i in ids])
    return app


class _Timed:
    """The transport, with each `send_many` call's wall time kept (batch latency)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.calls = inner, inner.name, []

    def send_many(self, messages):
        t0 = time.perf_counter()
        try:
            return self.inner.send_many(messages)
        finally:
            self.calls.append(time.perf_counter() - t0)

    def reconcile(self, touch_ids):
        return self.inner.reconcile(touch_ids)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) \
        if ordered else 0.0


def bench_end_to_end(url: str, n: int, concurrency: int, batch: int, work: Path) -> dict:
    from nurture.adapters.delivery.sendgrid import SendGridTransport
    from nurture.services.sending import send_chunk

    log(f"building a store with {n} due touches")
    app = build_store(work, n)
    transport = SendGridTransport("SG.bench-key", url, concurrency=concurrency,
                                  batch_size=batch)
    timed = _Timed(transport)
    ctx = dataclasses.replace(app.send_context(timed), batch_size=batch)  # type: ignore[arg-type]
    t0, c0 = time.perf_counter(), time.process_time()
    result = send_chunk(app.store, ctx, 1, n, datetime.now(UTC))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    transport.close()
    app.engine.dispose()
    sent = sum(s.sent for s in result.campaigns.values())
    out = {"touches": n, "sent": sent, "batch": batch, "concurrency": concurrency,
           "seconds": round(dt, 2), "per_min": round(60 * sent / dt),
           "cpu_ms_per_msg": round(1000 * cpu / max(1, sent), 3),
           "per_min_per_free_core": round(60 * sent / max(cpu, 1e-9)),
           "phase_seconds": {k: round(v, 2) for k, v in result.seconds.items()},
           "batch_ms_p50": _pct(timed.calls, 0.5), "batch_ms_p99": _pct(timed.calls, 0.99),
           "rate_gate_waits": transport.gate.waits, "throttled_429": transport.gate.throttled,
           "peak_rss_mb": peak_rss_mb()}
    log(f"end to end (batch {batch}, {concurrency} in flight): {sent}/{n} sent in {dt:.1f} s "
        f"= {out['per_min']:,}/min ({out['cpu_ms_per_msg']} ms CPU a message: "
        f"{out['per_min_per_free_core']:,}/min on one free core); send_many per batch p50 "
        f"{out['batch_ms_p50']} ms, p99 {out['batch_ms_p99']} ms; phases "
        f"{out['phase_seconds']}; peak RSS {out['peak_rss_mb']} MB")
    return out


def make_messages(n: int):
    """N rendered messages (the same campaign and templates), outside the timed part."""
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


def bench_transport(url: str, n: int, concurrency: int, batch: int) -> dict:
    from nurture.adapters.delivery.sendgrid import SendGridTransport

    messages = make_messages(n)
    transport = SendGridTransport("SG.bench-key", url, concurrency=concurrency)
    t0, c0 = time.perf_counter(), time.process_time()
    ok = 0
    for i in range(0, n, batch):
        ok += sum(d.ok for d in transport.send_many(messages[i:i + batch]))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    transport.close()
    out = {"messages": n, "ok": ok, "batch": batch, "seconds": round(dt, 2),
           "per_min": round(60 * ok / dt), "cpu_ms_per_msg": round(1000 * cpu / max(1, ok), 3),
           "per_min_per_free_core": round(60 * ok / max(cpu, 1e-9))}
    log(f"transport alone (send_many, batches of {batch}): {ok}/{n} in {dt:.1f} s = "
        f"{out['per_min']:,}/min ({out['cpu_ms_per_msg']} ms CPU a message: "
        f"{out['per_min_per_free_core']:,}/min on one free core)")
    return out


def _schema_path(arg: Path | None) -> Path | None:
    if arg:
        return arg
    official = os.environ.get("NURTURE_SENDGRID_SCHEMA")
    if official and (Path(official) / "tsg_mail_v3.json").is_file():
        return Path(official) / "tsg_mail_v3.json"
    return None  # the sink's default: nurture's own schema


def run(args: argparse.Namespace) -> dict:
    schema = _schema_path(args.schema)
    proc, port = start_sink(args.latency_ms, args.validate_every, schema, args.rate_limit)
    url = f"http://127.0.0.1:{port}"
    out: dict = {"latency_ms": args.latency_ms, "target_per_min": TARGET_PER_MIN,
                 "schema": str(schema or "nurture's own")}
    try:
        before = sink_stats(port)
        ceiling = sink_ceiling(port, args.ceiling_connections, args.ceiling_seconds)
        after = sink_stats(port)
        per_cpu = (after["requests"] - before["requests"]) / max(
            1e-9, after["cpu_seconds"] - before["cpu_seconds"])
        out["sink_ceiling_per_s"] = round(ceiling)
        out["sink_per_cpu_second"] = round(per_cpu)
        need = 2 * TARGET_PER_MIN / 60
        log(f"sink ceiling: {ceiling:,.0f} req/s measured with {args.ceiling_connections} "
            f"connections ({'OK' if ceiling >= need else 'BELOW'} the {need:,.0f}/s it must "
            f"reach); {per_cpu:,.0f} req per CPU second of the sink (its ceiling on one free "
            "core)")
        base = sink_stats(port)["accepted"]
        with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
            out["end_to_end"] = [bench_end_to_end(url, args.messages, args.concurrency, b,
                                                  Path(tmp) / str(b))
                                 for b in args.batch]
        out["transport_only"] = bench_transport(url, args.messages, args.concurrency,
                                                args.batch[-1])
        stats = sink_stats(port)
        out["sink"] = {k: stats[k] for k in ("accepted", "throttled", "validated", "invalid",
                                             "invalid_sample", "max_connections")}
        out["sink"]["accepted_in_sends"] = stats["accepted"] - base
        log(f"sink: {stats['accepted'] - base} accepted, {stats['throttled']} throttled, "
            f"schema sample {stats['validated']} checked, {stats['invalid']} invalid, up to "
            f"{stats['max_connections']} connections")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--messages", type=int, default=20_000, help="touches to send (20000)")
    p.add_argument("--concurrency", type=int, default=256, help="requests in flight (256)")
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="send batch size(s) to measure end to end (default: --concurrency)")
    p.add_argument("--latency-ms", type=float, default=30.0, help="sink answer delay (30)")
    p.add_argument("--validate-every", type=int, default=100,
                   help="sink validates one body in N against the schema (100; 0: none)")
    p.add_argument("--no-validate", action="store_true", help="same as --validate-every 0")
    p.add_argument("--schema", type=Path, default=None, help="schema for the sample check")
    p.add_argument("--rate-limit", type=int, default=0,
                   help="sink's sends per second before 429 (0: 1,000,000)")
    p.add_argument("--ceiling-connections", type=int, default=512)
    p.add_argument("--ceiling-seconds", type=float, default=3.0)
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    args = p.parse_args(argv)
    args.batch = args.batch or [args.concurrency]
    if args.no_validate:
        args.validate_every = 0
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.path.insert(0, str(ROOT))
    out = run(args)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
