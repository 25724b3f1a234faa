"""The funnel report over a large store: the previous path (every lead, transition and handoff
loaded into Python by `load_funnel_rows`, then `compute_funnel`) against the SQL one
(`funnel_report`, aggregates only).

    python benchmarks/funnel.py --leads 100000 --backend sqlite
    python benchmarks/funnel.py --leads 1000000 --backend postgresql --repeat 3

Builds the store of benchmarks/reports.py (leads over --days, their transitions, MQL
handoffs, rejects, SLA expiries and cold recycles) without touches and activities, which the
funnel does not read; then runs each path in a fresh process (peak RSS is per process),
alternating old and new, --repeat times each. Per run: wall seconds; CPU seconds of the Python
process (`resource.getrusage`) and, on PostgreSQL, of the server backend that served it
(/proc/<pid>/stat: the machine is shared, so wall time alone misleads); peak RSS (VmHWM) and
the peak before the report (imports and a connection). Prints medians, the load average
before and after, and checks that both paths returned the same report. A PostgreSQL schema
it creates is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.reports import PG_URL, build  # noqa: E402

PATHS = ("old", "new")


def _backend_cpu(pid: int | None) -> float | None:
    """utime + stime of a local process, in seconds (None when unreadable)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that across exec, so a
    child would report the benchmark parent's RSS (the store builder) as its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(path: str, url: str, as_of: datetime, out: Path) -> None:
    """One report by one path in this (fresh) process; its figures and report to `out`."""
    from nurture.core.funnel import compute_funnel
    from nurture.store.db import make_engine
    from nurture.store.funnel_queries import funnel_report, load_funnel_rows

    engine = make_engine(url)
    pid = None
    with engine.connect() as conn:  # the pooled connection the report will use
        if engine.dialect.name == "postgresql":
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    base_rss = _peak_rss_mb()
    ru0, server0, t0 = resource.getrusage(resource.RUSAGE_SELF), _backend_cpu(pid), \
        time.perf_counter()
    if path == "old":
        report = compute_funnel(*load_funnel_rows(engine), as_of)
    else:
        report = funnel_report(engine, as_of)
    wall = time.perf_counter() - t0
    ru1, server1 = resource.getrusage(resource.RUSAGE_SELF), _backend_cpu(pid)
    engine.dispose()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    out.write_text(json.dumps({
        "wall": wall, "cpu": cpu,
        "server_cpu": None if server0 is None or server1 is None else server1 - server0,
        "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base_rss, "report": report}))


def _spawn(path: str, url: str, as_of: datetime, work: Path) -> dict:
    out = work / f"run-{uuid.uuid4().hex[:6]}.json"
    subprocess.run([sys.executable, __file__, "--run", path, "--url", url,
                    "--as-of", as_of.isoformat(), "--out", str(out)], check=True)
    return json.loads(out.read_text())


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return round(statistics.median(values), 2) if values else None


def measure(url: str, repeat: int, work: Path) -> dict:
    as_of = datetime.now(UTC)
    runs: dict[str, list[dict]] = {p: [] for p in PATHS}
    for i in range(repeat):
        for path in PATHS if i % 2 == 0 else PATHS[::-1]:
            runs[path].append(_spawn(path, url, as_of, work))
    same = runs["old"][0]["report"] == runs["new"][0]["report"]
    return {"same_report": same, "leads_total": runs["new"][0]["report"]["leads_total"],
            **{p: {k: _median(rs, k) for k in ("wall", "cpu", "server_cpu", "peak_rss_mb",
                                                "base_rss_mb")} for p, rs in runs.items()}}


def main() -> int:
    from nurture.store.db import make_engine, upgrade

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each path (alternated)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--run", choices=PATHS, help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--as-of", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        run_one(args.run, args.url, datetime.fromisoformat(args.as_of), Path(args.out))
        return 0

    work = Path(tempfile.mkdtemp(prefix="nurture-bench-funnel-"))
    schema = None
    if args.backend == "sqlite":
        url = f"sqlite:///{work / 'bench.db'}"
    else:
        import psycopg

        schema = f"bench_funnel_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        engine = make_engine(url)
        upgrade(engine)
        t0 = time.perf_counter()
        counts = build(engine, args.leads, args.days, engagement=False)
        built = time.perf_counter() - t0
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        engine.dispose()
        load_before = os.getloadavg()
        result = measure(url, args.repeat, work)
        load_after = os.getloadavg()
    finally:
        if schema:
            import psycopg

            with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as c:
                c.execute(f'DROP SCHEMA "{schema}" CASCADE')
        shutil.rmtree(work, ignore_errors=True)
    result = {"backend": args.backend, "rows": counts, "build_seconds": round(built, 1),
              "repeat": args.repeat, "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in load_after], **result}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.backend}: {counts} built in {built:.0f} s; load average "
          f"{result['load_before']} -> {result['load_after']}; medians of {args.repeat} "
          f"alternated runs; same report: {result['same_report']}")
    print(f"  {'path':<36}{'wall s':>8}{'cpu s':>8}{'server cpu s':>14}{'peak RSS MB':>13}"
          f"{'before report':>15}")
    for path, label in (("old", "old: load_funnel_rows + compute"),
                        ("new", "new: funnel_report (SQL)")):
        m = result[path]
        print(f"  {label:<36}{m['wall']:>8}{m['cpu']:>8}{m['server_cpu'] or '-':>14}"
              f"{m['peak_rss_mb']:>13}{m['base_rss_mb']:>15}")
    return 0 if result["same_report"] else 1


if __name__ == "__main__":
    sys.exit(main())
