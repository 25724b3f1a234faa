"""Benchmark: daily cycles over N synthetic leads on a fresh database, against the floor.

    python benchmarks/daily_cycle.py --leads 100000 [--backend postgresql] [--days 7]

Builds a fresh database (SQLite file, or a PostgreSQL database created and dropped here)
with the demo generator (leads with 45 days of activity history), imports it through the
real CSV/JSONL importers, copies that day-0 state for the floor (`benchmarks/floor.py`: the
least code doing the same job), runs the day-0 cycle and the floor on the copy, then
`--days N` - 1 later days (each first gets new activity for a few % of leads and a few new
leads). The cycle runs the same chunk functions the Prefect flow's tasks call (`plan_chunk`,
`send_chunk`); `--flow` runs it through the flow itself (adds Prefect's overhead).

Prints a table on stderr and ONE JSON line on stdout. This is a benchmark, not a test: it
asserts nothing and its figures go in notes and docs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ACTIVITY_TYPES = ("page_view", "page_view", "page_view", "email_open", "email_click",
                  "content_download", "webinar_attended", "pricing_page_view")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--leads", type=int, default=10_000, help="number of leads (default 10000)")
    p.add_argument("--chunk-size", type=int, default=5000, help="leads per chunk (default 5000)")
    p.add_argument("--transport", choices=["outbox", "memory"], default="outbox",
                   help="outbox writes real .eml files (the default transport); memory keeps "
                        "messages in RAM to measure the engine alone")
    p.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-url", default=PG_SERVER,
                   help="PostgreSQL server URL; a fresh database bench_<pid> is created on it "
                        "and dropped afterwards (default %(default)s)")
    p.add_argument("--days", type=int, default=1,
                   help="day 0, then days 1..N-1 with new activity (default 1)")
    p.add_argument("--new-activity", type=float, default=0.03,
                   help="share of leads with new activity each later day (default 0.03)")
    p.add_argument("--new-leads", type=float, default=0.005,
                   help="new leads each later day, as a share of --leads (default 0.005)")
    p.add_argument("--no-floor", action="store_true", help="skip the floor comparison")
    p.add_argument("--floor-render", choices=["own", "engine"], default="own",
                   help="the floor's renderer (see benchmarks/floor.py)")
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
    db = Database(args, work)
    os.environ.update({
        "NURTURE_DATABASE_URL": db.url,
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
        out = run(args, work, db)
    finally:
        db.drop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(out)
    print(json.dumps(out))
    return 0


class Database:
    """The benchmark's database and the floor's copy of its day-0 state."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.backend = args.backend
        self.work = work
        if self.backend == "sqlite":
            self.url = f"sqlite:///{work / 'bench.db'}"
            self.copy_url = f"sqlite:///{work / 'floor.db'}"
            return
        self.server = args.pg_url
        self.name = f"bench_{os.getpid()}"
        base = args.pg_url.rsplit("/", 1)[0]
        self.url, self.copy_url = f"{base}/{self.name}", f"{base}/{self.name}_floor"
        self._admin(f"CREATE DATABASE {self.name}")

    def _admin(self, *sql: str) -> None:
        from sqlalchemy import create_engine, text
        eng = create_engine(self.server, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            for s in sql:
                conn.execute(text(s))
        eng.dispose()

    def copy(self) -> None:
        """The day-0 state for the floor (callers dispose their engines first)."""
        if self.backend == "sqlite":
            shutil.copy(self.work / "bench.db", self.work / "floor.db")
        else:
            self._admin(f"CREATE DATABASE {self.name}_floor TEMPLATE {self.name}")

    def drop_copy(self) -> None:
        if self.backend == "sqlite":
            (self.work / "floor.db").unlink(missing_ok=True)
        else:
            self._admin(f"DROP DATABASE IF EXISTS {self.name}_floor WITH (FORCE)")

    def drop(self) -> None:
        if self.backend == "postgresql":
            self._admin(f"DROP DATABASE IF EXISTS {self.name}_floor WITH (FORCE)",
                        f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def _transport(args: argparse.Namespace):
    """The memory transport keeps only the ids it accepted (a million messages would not
    fit); the outbox comes from the settings."""
    if args.transport != "memory":
        return None
    from nurture.adapters.delivery.memory import MemoryTransport

    return MemoryTransport(keep_messages=False)


def run(args: argparse.Namespace, work: Path, db: Database) -> dict:
    from nurture.devtools.demo_data import DEFAULT_START, write_demo_files
    from nurture.services.ingest import import_activities_jsonl, import_leads_csv
    from nurture.settings import Settings
    from nurture.store.db import upgrade
    from nurture.wiring import App

    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    seconds: dict[str, float] = {}

    def phase(name: str, t0: float) -> None:
        seconds[name] = round(time.perf_counter() - t0, 3)

    start = DEFAULT_START  # cycle day: a Monday 08:00 UTC, history before it
    t0 = time.perf_counter()
    # streamed: a million leads never sit in memory at once (same bytes as the list way)
    _, n_acts = write_demo_files(work / "leads.csv", work / "activities.jsonl", args.leads,
                                 seed=args.seed, start=start)
    with (work / "leads.csv").open(newline="", encoding="utf-8") as f:
        emails = [r["email"] for r in csv.DictReader(f)]
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
    if not args.no_floor:
        app.engine.dispose()
        db.copy()
    day0 = cycle(args, app, as_of, log)
    seconds["cycle"] = day0["seconds"]
    for k, v in day0["summary"].get("seconds", {}).items():
        seconds[f"cycle.{k}"] = v
    summary = day0["summary"]
    log(f"cycle done: {summary['touches_sent']:,} touches sent")
    engine_rss = rss_mb()
    out = {
        "leads": args.leads,
        "activities": act_report.inserted,
        "backend": args.backend,
        "transport": args.transport,
        "via": "prefect-flow" if args.flow else "engine",
        "chunk_size": args.chunk_size,
        "due_leads": summary["leads_scored"],
        "touches_planned": summary["touches_planned"],
        "touches_sent": summary["touches_sent"],
        "mqls": summary["mqls"],
        "recycled": summary["recycled"],
        "seconds": seconds,
        "cycle_leads_per_s": round(args.leads / day0["seconds"], 1) if day0["seconds"] else None,
        "us_per_touch": per_touch(day0["seconds"], summary["touches_sent"]),
        "phase_us_per_touch": {k: per_touch(v, summary["touches_sent"])
                               for k, v in summary.get("seconds", {}).items()},
        "peak_rss_mb": engine_rss,
        # this process's CPU: steadier than wall time on a shared machine (SQLite: all of
        # the work; PostgreSQL: the server's share is not in it)
        "cpu_seconds": day0["cpu_seconds"],
        "cpu_us_per_touch": per_touch(day0["cpu_seconds"], summary["touches_sent"]),
    }
    if not args.no_floor:
        out["floor"] = run_floor(args, db, as_of, work, log)
        db.drop_copy()
        f = out["floor"]
        out["ratio_to_floor"] = round(out["us_per_touch"] / f["us_per_touch"], 2) \
            if f["us_per_touch"] else None
        out["cpu_ratio_to_floor"] = round(out["cpu_us_per_touch"] / f["cpu_us_per_touch"], 2) \
            if f.get("cpu_us_per_touch") else None
    if args.days > 1:
        out["days"] = later_days(args, app, as_of, emails, day0, work, log)
    app.engine.dispose()
    return out


def cycle(args: argparse.Namespace, app, as_of, log) -> dict:
    """One cycle at `as_of`: its summary and wall seconds."""
    from nurture.services.cycle import run_cycle
    t0, c0 = time.perf_counter(), time.process_time()
    if args.flow:
        from nurture.flows.daily_cycle import daily_nurture_cycle
        summary = daily_nurture_cycle(as_of=as_of.isoformat(), chunk_size=args.chunk_size)
    else:
        summary = run_cycle(app.store, app.send_context(_transport(args)), as_of,
                            app.settings.default_timezone, args.chunk_size,
                            progress=lambda done, total: log(f"cycle {done:,}/{total:,} leads"))
    return {"summary": summary, "seconds": round(time.perf_counter() - t0, 3),
            "cpu_seconds": round(time.process_time() - c0, 3)}


def run_floor(args: argparse.Namespace, db: Database, as_of, work: Path, log) -> dict:
    """`benchmarks/floor.py` on the day-0 copy, in its own process (its own peak RSS)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "floor.py"), "--db", db.copy_url,
           "--as-of", as_of.isoformat(), "--transport", args.transport,
           "--outbox", str(work / "floor-outbox"), "--render", args.floor_render, "--json"]
    log("floor: " + " ".join(cmd[1:]))
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"floor failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def later_days(args: argparse.Namespace, app, as_of, emails: list[str], day0: dict,
               work: Path, log) -> list[dict]:
    """Days 1..N-1: new activity for a few % of leads and a few new leads, then the cycle."""
    from nurture.devtools.demo_data import generate_leads, write_leads_csv
    from nurture.services.ingest import import_activities_jsonl, import_leads_csv
    rng = random.Random(args.seed)
    base = day0["seconds"] or 1.0
    days = []
    for d in range(1, args.days):
        when = as_of + timedelta(days=d)
        new = list(generate_leads(int(args.leads * args.new_leads), seed=args.seed + 1000 + d,
                                  start=when - timedelta(hours=2)))
        for i, r in enumerate(new):  # unique addresses: never an existing lead's
            r["email"] = f"day{d}.{i}@new-leads.example"
        emails += [r["email"] for r in new]
        write_leads_csv(work / f"leads-day{d}.csv", new)
        import_leads_csv(app.store, work / f"leads-day{d}.csv")
        path = work / f"activities-day{d}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for i, email in enumerate(rng.sample(emails, int(len(emails) * args.new_activity))):
                at = when - timedelta(hours=rng.uniform(1, 23))
                fh.write(json.dumps({"id": f"day{d}-{i}", "email": email,
                                     "type": rng.choice(ACTIVITY_TYPES),
                                     "occurred_at": at.isoformat()}) + "\n")
        import_activities_jsonl(app.store, path)
        res = cycle(args, app, when, log)
        s = res["summary"]
        days.append({"day": d, "seconds": res["seconds"], "due_leads": s["leads_scored"],
                     "touches": s["touches_sent"], "mqls": s["mqls"],
                     "pct_of_day0": round(100 * res["seconds"] / base, 1)})
        log(f"day {d}: {s['leads_scored']:,} due leads, {s['touches_sent']:,} touches, "
            f"{res['seconds']:.2f} s ({days[-1]['pct_of_day0']}% of day 0)")
    return days


def per_touch(seconds: float, touches: int) -> float | None:
    return round(seconds / touches * 1e6, 1) if touches else None


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def print_table(out: dict) -> None:
    """The readable summary on stderr."""
    w = sys.stderr.write
    w(f"\n{out['leads']:,} leads, {out['backend']}, {out['transport']}: day 0 "
      f"{out['due_leads']:,} due leads, {out['touches_sent']:,} touches\n")
    w(f"{'':10}{'seconds':>10}{'µs/touch':>10}{'peak MB':>10}\n")
    w(f"{'engine':10}{out['seconds']['cycle']:>10.2f}{out['us_per_touch'] or 0:>10.0f}"
      f"{out['peak_rss_mb']:>10.0f}\n")
    if "floor" in out:
        f = out["floor"]
        w(f"{'floor':10}{f['seconds']:>10.2f}{f['us_per_touch']:>10.0f}"
          f"{f['peak_rss_mb']:>10.0f}\n")
        w(f"engine / floor per touch: {out['ratio_to_floor']}x wall, "
          f"{out['cpu_ratio_to_floor']}x CPU ({out['cpu_us_per_touch']:.0f} vs "
          f"{f['cpu_us_per_touch']:.0f} µs CPU/touch)\n")
    w("engine µs/touch by phase: " + ", ".join(
        f"{k} {v:.0f}" for k, v in out["phase_us_per_touch"].items() if v) + "\n")
    for d in out.get("days", []):
        w(f"day {d['day']}: {d['seconds']:.2f} s, {d['due_leads']:,} due leads, "
          f"{d['touches']:,} touches, {d['pct_of_day0']}% of day 0\n")


if __name__ == "__main__":
    raise SystemExit(main())
