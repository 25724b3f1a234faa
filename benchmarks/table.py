"""Benchmark: every throughput figure of issue #13 in one sitting, as one table.

    python benchmarks/table.py                          # 20k, 100k and 1M leads, both backends
    python benchmarks/table.py --sizes 20000 --quick    # a few minutes

Runs the other benchmarks one after another, each in its own process (its own peak RSS),
and prints one Markdown table: engine vs floor per due touch (`daily_cycle.py`, which runs
`floor.py` on a copy of the same day-0 database) at each size on SQLite and PostgreSQL with
the memory transport (and the outbox up to `--outbox-max` leads), the steady-state days,
SendGrid messages per minute against the sink's own ceiling (`sendgrid_delivery.py`),
webhook events per second (`webhook_ingest.py`), and Prefect's overhead and the Dask
speed-up (`prefect_overhead.py`). Progress goes to stderr; `--json` prints every result.

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"  # a server: benchmarks make DBs


def bench(name: str, *args: str) -> dict:
    """One benchmark script's JSON result (its last stdout line)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / name), *args]
    print(f"\n$ {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if res.returncode != 0:  # the rest of the sitting still runs; the table says so
        print(f"!! {name} failed with exit code {res.returncode}", file=sys.stderr, flush=True)
        return {"failed": f"{' '.join(cmd[1:])}: exit code {res.returncode}"}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["_wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def cycles(args: argparse.Namespace) -> list[dict]:
    runs = []
    for n in args.sizes:
        for backend in args.backends:
            for transport in ("memory", "outbox"):
                if transport == "outbox" and n > args.outbox_max:
                    continue
                days = args.days if (n == args.steady_size and transport == "memory") \
                    else 2 if n >= 1_000_000 else 1
                runs.append(bench("daily_cycle.py", "--leads", str(n), "--backend", backend,
                                  "--transport", transport, "--days", str(days),
                                  "--pg-url", args.pg_url))
    return runs


def webhook(args: argparse.Namespace, backend: str) -> dict:
    """`webhook_ingest.py` (median of 3) on SQLite, or on a PostgreSQL database made for it
    and dropped; then HTTP with 4 batches in flight, as SendGrid posts them."""
    def runs(*extra: str) -> dict:
        one = bench("webhook_ingest.py", "--events", str(args.events), "--backend", backend,
                    "--repeat", "3", "--json", *extra) | {"backend": backend}
        many = bench("webhook_ingest.py", "--events", str(args.events), "--backend", backend,
                     "--repeat", "3", "--mode", "http", "--concurrency", "4", "--json", *extra)
        return one | {"http, 4 in flight": many["http"]}

    if backend == "sqlite":
        return runs()
    import psycopg

    admin = args.pg_url.replace("postgresql+psycopg://", "postgresql://")
    name = "nurture_bench_table_webhook"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        return runs("--pg-url", args.pg_url.rsplit("/", 1)[0] + "/" + name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cycle_rows(runs: list[dict]) -> list[str]:
    rows = ["| leads | backend | transport | engine s | floor s | engine µs/touch | "
            "floor µs/touch | ratio (wall / CPU) | touches | peak RSS MB (engine / floor) |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        if "failed" in r:
            rows.append(f"| failed: {r['failed']} |")
            continue
        f = r.get("floor", {})
        rows.append(
            f"| {r['leads']:,} | {r['backend']} | {r['transport']} | "
            f"{r['seconds']['cycle']:.1f} | {f.get('seconds', 0):.1f} | "
            f"{r['us_per_touch']:.0f} | {f.get('us_per_touch', 0):.0f} | "
            f"{r.get('ratio_to_floor')} / {r.get('cpu_ratio_to_floor')} | "
            f"{r['touches_sent']:,} | {r['peak_rss_mb']:.0f} / {f.get('peak_rss_mb', 0):.0f} |")
    return rows


def day_rows(runs: list[dict]) -> list[str]:
    rows = ["", "| leads | backend | day | due leads | touches | seconds | % of day 0 |",
            "|---:|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        if "failed" in r or r["transport"] != "memory":
            continue
        rows.append(f"| {r['leads']:,} | {r['backend']} | 0 | {r['due_leads']:,} | "
                    f"{r['touches_sent']:,} | {r['seconds']['cycle']:.1f} | 100 |")
        for d in r.get("days", []):
            rows.append(f"| {r['leads']:,} | {r['backend']} | {d['day']} | "
                        f"{d['due_leads']:,} | {d['touches']:,} | {d['seconds']:.1f} | "
                        f"{d['pct_of_day0']} |")
    return rows


def other_rows(sg: dict | None, hooks: list[dict], dask: dict | None) -> list[str]:
    rows = ["", "| figure | value |", "|---|---|"]
    rows += [f"| failed | {r['failed']} |" for r in (sg, *hooks, dask) if r and "failed" in r]
    sg, dask = (None if r and "failed" in r else r for r in (sg, dask))
    hooks = [h for h in hooks if "failed" not in h]
    if sg:
        e2e = max(sg["end_to_end"], key=lambda x: x["per_min"])
        rows += [f"| SendGrid end to end (render, send, record), {sg['latency_ms']:.0f} ms "
                 f"sink | {e2e['per_min']:,} messages/min (batch {e2e['batch']}, "
                 f"{e2e['concurrency']} in flight, peak RSS {e2e['peak_rss_mb']:.0f} MB) |",
                 f"| SendGrid transport alone | {sg['transport_only']['per_min']:,} "
                 "messages/min |",
                 f"| sink ceiling | {sg['sink_ceiling_per_s']:,} requests/s "
                 f"(= {60 * sg['sink_ceiling_per_s']:,}/min) |",
                 f"| schema sample | {sg['sink']['validated']} bodies checked, "
                 f"{sg['sink']['invalid']} invalid |"]
    for h in hooks:
        for mode in ("service", "http", "http, 4 in flight"):
            if mode in h:
                rows.append(f"| webhook ingest, {h['backend']}, {mode} | "
                            f"{h[mode]['first']['end_to_end_per_s']:,.0f} events/s (median "
                            f"of {h[mode]['runs_end_to_end_per_s']}) |")
    if dask:
        s = dask["seconds"]
        rows.extend([f"| Prefect overhead, {dask['leads']:,} leads, {dask['backend']} | "
                    f"{dask.get('prefect_overhead_pct')} % (engine {s.get('engine')} s, "
                    f"flow {s.get('flow-w1')} s, of which {s.get('flow-w1 after sends')} s "
                    "after the sends: CRM handoffs, funnel and results reports) |",
                    f"| Prefect overhead without the flow's jobs after its sends | "
                    f"{dask.get('prefect_overhead_cycle_pct')} % |"])
        for k, v in (dask.get("speedup") or {}).items():
            run, _, base = k.partition(" vs ")
            rows.append(f"| {run} vs {base} | {v}× ({s.get(run)} s vs {s.get(base)} s) |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--sizes", default="20000,100000,1000000",
                   help="lead counts, comma-separated (default 20000,100000,1000000)")
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--outbox-max", type=int, default=100_000,
                   help="largest size also run with the outbox transport")
    p.add_argument("--steady-size", type=int, default=100_000,
                   help="size whose memory-transport runs go on for --days")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--pg-url", default=PG)
    p.add_argument("--dask-leads", type=int, default=100_000)
    p.add_argument("--dask-repeats", type=int, default=3,
                   help="runs of each Prefect/Dask measurement (median; default 3)")
    p.add_argument("--messages", type=int, default=20_000, help="SendGrid messages")
    p.add_argument("--events", type=int, default=20_000, help="webhook events per backend")
    p.add_argument("--quick", action="store_true",
                   help="skip SendGrid, webhook and Dask benchmarks")
    p.add_argument("--parts", default="cycles,sendgrid,webhook,dask",
                   help="which parts to run, comma-separated (default all: "
                        "cycles,sendgrid,webhook,dask)")
    p.add_argument("--json", action="store_true", help="also print every result as JSON")
    p.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.backends = args.backends.split(",")
    t0 = time.perf_counter()
    parts = set(args.parts.split(",")) - ({"sendgrid", "webhook", "dask"} if args.quick
                                          else set())
    runs = cycles(args) if "cycles" in parts else []
    sg = dask = None
    hooks: list[dict] = []
    if "sendgrid" in parts:
        sg = bench("sendgrid_delivery.py", "--messages", str(args.messages), "--json")
    if "webhook" in parts:
        hooks = [webhook(args, b) for b in args.backends]
    if "dask" in parts:
        dask = bench("prefect_overhead.py", "--leads", str(args.dask_leads), "--workers",
                     "1,2", "--dask", "1,2", "--repeats", str(args.dask_repeats),
                     "--pg-url", args.pg_url, "--json")
    lines = cycle_rows(runs) + day_rows(runs) + other_rows(sg, hooks, dask)
    lines.append(f"\n{time.perf_counter() - t0:,.0f} s in all.")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps({"cycles": runs, "sendgrid": sg, "webhook": hooks, "dask": dask}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
