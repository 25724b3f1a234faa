"""Benchmark: what Prefect costs, and what Dask workers gain, on one daily cycle.

    python benchmarks/prefect_overhead.py --leads 20000                    # SQLite, overhead
    python benchmarks/prefect_overhead.py --leads 100000 --workers 1,2 \\
        --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres     # + Dask speed-up

Builds one database (the demo generator's leads with 45 days of activity, imported through
the real importers, as `benchmarks/daily_cycle.py` does), keeps it as a template, and for
every measurement starts from a fresh copy of it: the engine alone (`run_cycle`, no Prefect)
and the Prefect flow with each `--workers` count (1: chunks one after another; above 1:
Prefect's thread pool on SQLite, a local Dask cluster of N processes on PostgreSQL — its
start-up is part of the time, as it is for users). Prints a table on stderr and, with
`--json`, one JSON line: seconds per measurement (median of `--repeats`), the flow's
overhead over the engine in %, and the speed-up of each worker count over 1.

A benchmark, not a test: it asserts nothing. On PostgreSQL it creates and drops its own
databases (`nurture_bench_*`) next to the one in `--pg-url`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--leads", type=int, default=20_000, help="number of leads (default 20000)")
    p.add_argument("--chunk-size", type=int, default=5000, help="leads per chunk (default 5000)")
    p.add_argument("--workers", default="1",
                   help="comma-separated worker counts for the flow, e.g. 1,2 (default 1)")
    p.add_argument("--dask", default="",
                   help="comma-separated worker counts for the flow on Dask by name "
                        "(NURTURE_TASK_RUNNER=dask, one worker included), e.g. 1,2")
    p.add_argument("--repeats", type=int, default=1, help="runs per measurement (median)")
    p.add_argument("--pg-url", default=None,
                   help="PostgreSQL server to use (any database on it); default SQLite")
    p.add_argument("--transport", choices=["outbox", "memory"], default="memory",
                   help="memory (default) measures the engine, outbox writes .eml files")
    p.add_argument("--no-engine", action="store_true", help="skip the engine-only runs")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    args = p.parse_args(argv)
    args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    args.dask_counts = [int(w) for w in args.dask.split(",") if w.strip()]
    return args


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Databases:
    """The template database and fresh copies of it (SQLite files or PG databases)."""

    def __init__(self, work: Path, pg_url: str | None) -> None:
        self.work = work
        self.pg_url = pg_url
        self.tag = f"nurture_bench_{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []

    def url(self, name: str) -> str:
        if self.pg_url is None:
            return f"sqlite:///{self.work / (name + '.db')}"
        base, _, query = self.pg_url.partition("?")
        return base.rsplit("/", 1)[0] + f"/{self.tag}_{name}" + (f"?{query}" if query else "")

    def _admin(self, sql: str) -> None:
        import psycopg

        base = self.pg_url.replace("postgresql+psycopg://", "postgresql://").partition("?")[0]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql)

    def create(self, name: str, template: str | None = None) -> str:
        if self.pg_url is None:
            if template:
                shutil.copyfile(self.work / f"{template}.db", self.work / f"{name}.db")
            return self.url(name)
        self.drop(name)
        extra = f' TEMPLATE "{self.tag}_{template}"' if template else ""
        self._admin(f'CREATE DATABASE "{self.tag}_{name}"{extra}')
        self.made.append(name)
        return self.url(name)

    def drop(self, name: str) -> None:
        if self.pg_url is not None:
            self._admin(f'DROP DATABASE IF EXISTS "{self.tag}_{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        for name in reversed(self.made):
            self.drop(name)


def build(args: argparse.Namespace, dbs: Databases) -> None:
    """The template database: demo leads and their activity history, imported."""
    from nurture.devtools.demo_data import DEFAULT_START, write_demo_files
    from nurture.services.ingest import import_activities_jsonl, import_leads_csv
    from nurture.settings import Settings
    from nurture.store.db import upgrade
    from nurture.wiring import App

    # the same bytes as daily_cycle.py's data, streamed (constant memory)
    write_demo_files(dbs.work / "leads.csv", dbs.work / "activities.jsonl", args.leads,
                     seed=args.seed, start=DEFAULT_START)
    app = App(Settings(database_url=dbs.create("template")))
    upgrade(app.engine)
    import_leads_csv(app.store, dbs.work / "leads.csv")
    import_activities_jsonl(app.store, dbs.work / "activities.jsonl")
    app.engine.dispose()


def _env(url: str, work: Path, transport: str, run: str) -> None:
    os.environ.update({"NURTURE_DATABASE_URL": url, "NURTURE_TRANSPORT": transport,
                       "NURTURE_OUTBOX_DIR": str(work / f"outbox-{run}")})


def engine_once(args: argparse.Namespace, url: str, work: Path, run: str) -> tuple[float, int]:
    from nurture.devtools.demo_data import DEFAULT_START
    from nurture.services.cycle import run_cycle
    from nurture.settings import Settings
    from nurture.wiring import App

    _env(url, work, args.transport, run)
    t0 = time.perf_counter()  # opening the config and the store counts, as in the flow
    app = App(Settings())
    summary = run_cycle(app.store, app.send_context(), DEFAULT_START + timedelta(hours=1),
                        app.settings.default_timezone, args.chunk_size)
    seconds = time.perf_counter() - t0
    app.engine.dispose()
    return seconds, summary["touches_sent"]


def flow_once(args: argparse.Namespace, url: str, work: Path, run: str,
              workers: int, runner: str = "auto") -> tuple[float, int]:
    from nurture.devtools.demo_data import DEFAULT_START
    from nurture.flows.daily_cycle import daily_nurture_cycle

    _env(url, work, args.transport, run)
    os.environ["NURTURE_TASK_RUNNER"] = runner
    t0 = time.perf_counter()
    summary = daily_nurture_cycle(as_of=(DEFAULT_START + timedelta(hours=1)).isoformat(),
                                  chunk_size=args.chunk_size, workers=workers)
    AFTER_SENDS.append(summary["seconds"].get("after_sends", 0.0))
    return time.perf_counter() - t0, summary["touches_sent"]


# seconds each flow run spent after its sends, on what `run_cycle` does not do (CRM
# handoffs, the funnel and results reports): set apart so the overhead is Prefect's
AFTER_SENDS: list[float] = []


def warm_up_prefect() -> None:
    """Start the temporary Prefect server before anything is timed."""
    from prefect import flow

    @flow(name="nurture-benchmark-warm-up")
    def warm() -> int:
        return 1

    warm()


def measure(args: argparse.Namespace, dbs: Databases) -> dict[str, list[float]]:
    plan = ([("engine", 0, "")] if not args.no_engine else []) + [
        (f"flow-w{w}", w, "auto") for w in args.worker_counts] + [
        (f"dask-w{w}", w, "dask") for w in args.dask_counts]
    times: dict[str, list[float]] = {name: [] for name, _, _ in plan}
    sent: dict[str, int] = {}
    for rep in range(args.repeats):  # one of each per repeat: a slow spell hits all alike
        for name, workers, runner in plan:
            run = f"{name.replace('-', '_')}_{rep}"
            url = dbs.create(run, template="template")
            if workers == 0:
                seconds, n = engine_once(args, url, dbs.work, run)
            else:
                seconds, n = flow_once(args, url, dbs.work, run, workers, runner)
                times.setdefault(f"{name} after sends", []).append(AFTER_SENDS[-1])
            dbs.drop(run)
            times[name].append(seconds)
            sent[name] = n
            log(f"{name} (repeat {rep + 1}): {seconds:.2f} s, {n:,} touches sent")
    if len(set(sent.values())) > 1:
        log(f"WARNING: runs sent different numbers of touches: {sent}")
    return times


def report(args: argparse.Namespace, times: dict[str, list[float]]) -> dict:
    med = {name: round(statistics.median(ts), 3) for name, ts in times.items()}
    out: dict = {"leads": args.leads, "chunk_size": args.chunk_size,
                 "backend": "postgresql" if args.pg_url else "sqlite",
                 "transport": args.transport, "repeats": args.repeats,
                 "cpus": os.cpu_count(), "seconds": med,
                 "all_seconds": {k: [round(t, 3) for t in v] for k, v in times.items()}}
    runs = {k: v for k, v in med.items() if not k.endswith("after sends")}
    if "engine" in med and "flow-w1" in med:
        out["prefect_overhead_pct"] = round(100 * (med["flow-w1"] / med["engine"] - 1), 1)
        # the same, without the jobs the flow does after its sends and the engine does not
        cycle_only = med["flow-w1"] - med.get("flow-w1 after sends", 0.0)
        out["prefect_overhead_cycle_pct"] = round(100 * (cycle_only / med["engine"] - 1), 1)
    out["speedup"] = {}
    for kind in ("flow", "dask"):  # N workers against one, on the same runner
        one = med.get(f"{kind}-w1")
        out["speedup"] |= {f"{k} vs {kind}-w1": round(one / v, 2) for k, v in runs.items()
                           if one and k.startswith(f"{kind}-w") and k != f"{kind}-w1"}
    if "flow-w1" in med:  # Dask's N workers against the flow's one worker in its process
        out["speedup"] |= {f"{k} vs flow-w1": round(med["flow-w1"] / v, 2)
                           for k, v in runs.items() if k.startswith("dask-w")}
    print(f"{'run':<22} {'seconds':>9} {'leads/s':>9}", file=sys.stderr)
    for name, s in med.items():
        rate = f"{args.leads / s:>9.0f}" if name in runs and s else ""
        print(f"{name:<22} {s:>9.2f} {rate}", file=sys.stderr)
    if "prefect_overhead_pct" in out:
        print(f"Prefect overhead (flow-w1 vs engine): {out['prefect_overhead_pct']:+.1f} %; "
              f"without the flow's jobs after its sends: "
              f"{out['prefect_overhead_cycle_pct']:+.1f} %", file=sys.stderr)
    for k, v in out["speedup"].items():
        print(f"speed-up {k}: {v:.2f}x", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    sys.path.insert(0, str(ROOT))
    from nurture.entrypoints.cli.common import quiet_prefect

    quiet_prefect()  # the same quiet defaults `nurture cycle` uses (no shutdown chatter)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.update({"NURTURE_CAMPAIGNS_DIR": str(ROOT / "campaigns"),
                       "NURTURE_TEMPLATES_DIR": str(ROOT / "templates"),
                       "NURTURE_CHUNK_SIZE": str(args.chunk_size)})
    work = Path(tempfile.mkdtemp(prefix="nurture-overhead-"))
    dbs = Databases(work, args.pg_url)
    try:
        log(f"building {args.leads:,} leads on {'PostgreSQL' if args.pg_url else 'SQLite'}")
        build(args, dbs)
        log("built; starting Prefect's temporary server")
        warm_up_prefect()
        out = report(args, measure(args, dbs))
    finally:
        dbs.drop_all()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
