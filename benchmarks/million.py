"""Benchmark: a million leads end to end — generate, import, day 0, a steady-state day.

    python benchmarks/million.py --leads 100000 --backend both

Per backend (SQLite file or PostgreSQL database), in a process of its own so its peak RSS is
its own: writes the demo leads (CSV) and their 45 days of activity (JSONL) in one streaming
pass, imports both through the real importers (COPY on PostgreSQL), runs day 0's cycle, then a
steady-state day: fresh activity for a few % of the leads is imported and the cycle runs again
one day later. Per stage it prints seconds, rows/s, touches, µs/touch and the process's peak
RSS so far (ru_maxrss), which must stay under 1 GB: nothing on the path may hold all leads.

The cycle runs `nurture.services.cycle.run_cycle` with the memory transport keeping only
touch ids (`MemoryTransport(keep_messages=False)`: every message kept would be gigabytes
at this size). A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_million"
RSS_LIMIT_MB = 1024


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Progress goes to stderr; --json prints one JSON line.")
    p.add_argument("--leads", type=int, default=1_000_000, help="leads (default 1000000)")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG),
                   help="PostgreSQL database to use; its public schema is DROPPED and rebuilt "
                        f"(default {DEFAULT_PG} or $BENCH_PG_URL)")
    p.add_argument("--chunk-size", type=int, default=5000, help="leads per cycle chunk")
    p.add_argument("--fresh-share", type=float, default=0.03,
                   help="share of leads with new activity on the steady-state day (0.03)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-cycle", action="store_true", help="stop after the imports")
    p.add_argument("--work", type=Path, default=None,
                   help="directory for the files and the SQLite database (default: a temp "
                        "dir, removed)")
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.backend == "both":
        results = [_child(args, b) for b in ("sqlite", "postgresql")]
    else:
        results = [one_backend(args)]
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0]))
    else:
        for r in results:
            print(table(r))
    return 0


def _child(args: argparse.Namespace, backend: str) -> dict:
    """One backend in a process of its own: ru_maxrss is per process."""
    cmd = [sys.executable, __file__, "--leads", str(args.leads), "--backend", backend,
           "--pg-url", args.pg_url, "--chunk-size", str(args.chunk_size), "--fresh-share",
           str(args.fresh_share), "--seed", str(args.seed), "--json"]
    if args.skip_cycle:
        cmd.append("--skip-cycle")
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(r: dict) -> str:
    lines = [f"{r['backend']}: {r['leads']:,} leads, peak RSS {r['peak_rss_mb']:,.0f} MB "
             f"({'under' if r['under_1gb'] else 'OVER'} 1 GB), wall {r['wall_s']:,.1f} s",
             f"  {'stage':<18}{'seconds':>10}{'rows':>12}{'rows/s':>10}{'touches':>10}"
             f"{'µs/touch':>10}{'RSS MB':>9}"]
    for name, s in r["stages"].items():
        lines.append(f"  {name:<18}{s['seconds']:>10.1f}{s.get('rows', 0):>12,}"
                     f"{s.get('rows_per_s') or 0:>10,.0f}{s.get('touches', 0):>10,}"
                     f"{s.get('us_per_touch') or 0:>10,.0f}{s['peak_rss_mb']:>9,.0f}")
    return "\n".join(lines)


def _environment(args: argparse.Namespace, work: Path) -> str:
    url = (f"sqlite:///{work / 'million.db'}" if args.backend == "sqlite" else args.pg_url)
    os.environ.update({
        "NURTURE_DATABASE_URL": url,
        "NURTURE_OUTBOX_DIR": str(work / "outbox"),
        "NURTURE_TRANSPORT": "memory",
        "NURTURE_CAMPAIGNS_DIR": str(ROOT / "campaigns"),
        "NURTURE_TEMPLATES_DIR": str(ROOT / "templates"),
        "NURTURE_CHUNK_SIZE": str(args.chunk_size),
    })
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    return url


def one_backend(args: argparse.Namespace) -> dict:
    work = args.work or Path(tempfile.mkdtemp(prefix="nurture-million-"))
    work.mkdir(parents=True, exist_ok=True)
    _environment(args, work)
    t0 = time.perf_counter()
    try:
        stages = Stages(args.backend)
        run(args, work, stages)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return {"backend": args.backend, "leads": args.leads, "chunk_size": args.chunk_size,
            "fresh_share": args.fresh_share, "stages": stages.out,
            "wall_s": round(time.perf_counter() - t0, 1), "peak_rss_mb": peak_rss_mb(),
            "under_1gb": peak_rss_mb() < RSS_LIMIT_MB}


class Stages:
    """Times each stage and records its rows, touches and the peak RSS so far."""

    def __init__(self, backend: str) -> None:
        self.backend, self.out, self.t_start = backend, {}, time.perf_counter()

    def log(self, msg: str) -> None:
        print(f"[{self.backend} {time.perf_counter() - self.t_start:7.1f}s "
              f"{peak_rss_mb():6.0f}MB] {msg}", file=sys.stderr, flush=True)

    def done(self, name: str, t0: float, rows: int = 0, touches: int = 0, **extra) -> None:
        s = time.perf_counter() - t0
        self.out[name] = {"seconds": round(s, 2), "rows": rows,
                          "rows_per_s": round(rows / s) if rows and s else None,
                          "touches": touches,
                          "us_per_touch": round(s * 1e6 / touches) if touches else None,
                          "peak_rss_mb": peak_rss_mb(), **extra}
        self.log(f"{name}: {s:.1f}s, {rows:,} rows, {touches:,} touches")


def _fresh_db(app, backend: str) -> None:
    from sqlalchemy import text

    from nurture.store.db import upgrade

    if backend == "postgresql":
        with app.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(app.engine)


def run(args: argparse.Namespace, work: Path, st: Stages) -> None:
    from nurture.devtools.demo_data import DEFAULT_START, write_demo_files
    from nurture.services.ingest import import_activities_jsonl, import_leads_csv
    from nurture.settings import Settings
    from nurture.wiring import App

    start = DEFAULT_START
    t0 = time.perf_counter()
    n_leads, n_acts = write_demo_files(work / "leads.csv", work / "activities.jsonl",
                                       args.leads, seed=args.seed, start=start)
    st.done("generate", t0, rows=n_leads + n_acts, activities=n_acts)

    app = App(Settings())
    _fresh_db(app, args.backend)
    def progress(what: str):
        every, mark = max(args.leads // 10, 1000), [0]

        def report(n: int) -> None:
            if n >= mark[0] + every:
                mark[0] = n
                st.log(f"{what}: {n:,} rows read")
        return report

    t0 = time.perf_counter()
    rep = import_leads_csv(app.store, work / "leads.csv", progress=progress("leads"))
    st.done("import_leads", t0, rows=rep.read, inserted=rep.inserted,
            quarantined=rep.quarantined)
    t0 = time.perf_counter()
    rep = import_activities_jsonl(app.store, work / "activities.jsonl",
                                  progress=progress("activities"))
    st.done("import_activities", t0, rows=rep.read, inserted=rep.inserted,
            quarantined=rep.quarantined)
    if args.skip_cycle:
        return
    as_of = start + timedelta(hours=1)
    _cycle(app, as_of, args.chunk_size, "day0", st)
    _steady_day(app, args, work, as_of + timedelta(days=1), st)


def _steady_day(app, args: argparse.Namespace, work: Path, as_of, st: Stages) -> None:
    """New activity for a few % of leads during the day before `as_of`, then the cycle."""
    from nurture.devtools.demo_data import (
        generate_fresh_activities,
        sample_leads,
        write_activities_jsonl,
    )
    from nurture.services.ingest import import_activities_jsonl

    t0 = time.perf_counter()
    path = work / "fresh.jsonl"
    n = write_activities_jsonl(path, generate_fresh_activities(
        sample_leads(args.leads, args.fresh_share, seed=args.seed),
        as_of - timedelta(days=1), seed=args.seed))
    st.done("fresh_generate", t0, rows=n)
    t0 = time.perf_counter()
    rep = import_activities_jsonl(app.store, path)
    st.done("fresh_import", t0, rows=rep.read, inserted=rep.inserted)
    _cycle(app, as_of, args.chunk_size, "day1", st)


def _cycle(app, as_of, chunk_size: int, name: str, st: Stages) -> None:
    from nurture.adapters.delivery.memory import MemoryTransport
    from nurture.services.cycle import run_cycle

    ctx = app.send_context(transport=MemoryTransport(keep_messages=False))
    step = [0]

    def progress(done: int, total: int) -> None:
        step[0] += 1
        if step[0] % 20 == 0 or done == total:
            st.log(f"{name} cycle {done:,}/{total:,} leads")

    t0 = time.perf_counter()
    summary = run_cycle(app.store, ctx, as_of, app.settings.default_timezone, chunk_size,
                        progress=progress)
    st.done(f"cycle_{name}", t0, rows=summary.get("leads_scored", 0) or 0,
            touches=summary["touches_sent"], planned=summary["touches_planned"],
            mqls=summary["mqls"], cycle_seconds=summary.get("seconds", {}))


if __name__ == "__main__":
    raise SystemExit(main())
