"""Benchmark: one daily cycle over N synthetic leads on a fresh SQLite database.

    python benchmarks/daily_cycle.py --leads 100000

Builds a fresh database with the demo generator (leads with 45 days of activity history),
imports it through the real CSV/JSONL importers, runs one cycle and prints ONE JSON line:
leads, touches sent, seconds per phase, leads/s and peak RSS. The cycle runs the same chunk
functions the Prefect flow's tasks call (`plan_chunk`, `send_chunk`); `--flow` runs it
through the flow itself instead (adds Prefect's start-up and per-task overhead).

This is a benchmark, not a test: it asserts nothing and its figures go in notes and docs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Prints one JSON line; progress goes to stderr.")
    p.add_argument("--leads", type=int, default=10_000, help="number of leads (default 10000)")
    p.add_argument("--chunk-size", type=int, default=5000, help="leads per chunk (default 5000)")
    p.add_argument("--transport", choices=["outbox", "memory"], default="outbox",
                   help="outbox writes real .eml files (the default transport); memory keeps "
                        "messages in RAM to measure the engine alone")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--flow", action="store_true",
                   help="run the cycle through the Prefect flow (temporary local server)")
    p.add_argument("--keep", type=Path, default=None,
                   help="build in this directory and keep it (default: a temp dir, removed)")
    args = p.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="nurture-bench-"))
    if args.keep:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update({
        "NURTURE_DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
        "NURTURE_OUTBOX_DIR": str(work / "outbox"),
        "NURTURE_TRANSPORT": args.transport,
        "NURTURE_CAMPAIGNS_DIR": str(ROOT / "campaigns"),
        "NURTURE_TEMPLATES_DIR": str(ROOT / "templates"),
        "NURTURE_CHUNK_SIZE": str(args.chunk_size),
    })
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    try:
        out = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


def run(args: argparse.Namespace, work: Path) -> dict:
    from nurture.devtools.demo_data import (
        DEFAULT_START,
        generate_activities,
        generate_leads,
        write_activities_jsonl,
        write_leads_csv,
    )
    from nurture.services.cycle import run_cycle
    from nurture.services.ingest import import_activities_jsonl, import_leads_csv
    from nurture.settings import Settings
    from nurture.store.db import upgrade
    from nurture.wiring import App

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    seconds: dict[str, float] = {}

    def phase(name: str, t0: float) -> None:
        seconds[name] = round(time.perf_counter() - t0, 3)

    start = DEFAULT_START  # cycle day: a Monday 08:00 UTC, history before it
    t0 = time.perf_counter()
    rows = list(generate_leads(args.leads, seed=args.seed, start=start))
    write_leads_csv(work / "leads.csv", rows)
    n_acts = write_activities_jsonl(work / "activities.jsonl",
                                    generate_activities(rows, start, 0, seed=args.seed))
    del rows
    phase("generate", t0)
    log(f"generated {args.leads:,} leads, {n_acts:,} activities")

    app = App(Settings())
    upgrade(app.engine)
    t0 = time.perf_counter()
    lead_report = import_leads_csv(app.store, work / "leads.csv")
    phase("import_leads", t0)
    t0 = time.perf_counter()
    act_report = import_activities_jsonl(app.store, work / "activities.jsonl")
    phase("import_activities", t0)
    log(f"imported {lead_report.inserted:,} leads, {act_report.inserted:,} activities")

    as_of = start + timedelta(hours=1)
    t0 = time.perf_counter()
    if args.flow:
        from nurture.flows.daily_cycle import daily_nurture_cycle

        summary = daily_nurture_cycle(as_of=as_of.isoformat(), chunk_size=args.chunk_size)
    else:
        ctx = app.send_context()
        summary = run_cycle(app.store, ctx, as_of, app.settings.default_timezone,
                            args.chunk_size,
                            progress=lambda done, total: log(f"cycle {done:,}/{total:,} leads"))
    cycle_s = time.perf_counter() - t0
    seconds["cycle"] = round(cycle_s, 3)
    for k, v in summary.get("seconds", {}).items():
        seconds[f"cycle.{k}"] = v
    log(f"cycle done: {summary['touches_sent']:,} touches sent")
    return {
        "leads": args.leads,
        "activities": act_report.inserted,
        "transport": args.transport,
        "via": "prefect-flow" if args.flow else "engine",
        "chunk_size": args.chunk_size,
        "touches_planned": summary["touches_planned"],
        "touches_sent": summary["touches_sent"],
        "mqls": summary["mqls"],
        "recycled": summary["recycled"],
        "seconds": seconds,
        "cycle_leads_per_s": round(args.leads / cycle_s, 1) if cycle_s else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
