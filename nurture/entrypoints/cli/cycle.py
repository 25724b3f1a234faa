"""`nurture cycle`: one run of the daily flow, in-process."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from nurture.entrypoints.cli.common import (
    EXIT_OK,
    build_app,
    console,
    in_range,
    parse_as_of,
    print_json,
)


def run_cycle_flow(as_of: datetime | None, dry_run: bool, chunk_size: int | None,
                   workers: int | None = None) -> dict[str, Any]:
    """Run the daily flow in-process (Prefect starts a temporary server if none is set),
    on the task runner `workers` calls for (threads, a local Dask cluster, or the
    scheduler at NURTURE_DASK_ADDRESS)."""
    # deferred: Prefect takes about a second to import; `nurture --help` must not pay it
    from nurture.flows.daily_cycle import daily_nurture_cycle

    return daily_nurture_cycle(as_of=as_of.isoformat() if as_of else None, dry_run=dry_run,
                               chunk_size=chunk_size, workers=workers)


def cmd_cycle(args: argparse.Namespace) -> int:
    from nurture.entrypoints.cli.tables import print_summary  # deferred: rich (--help)

    as_of = parse_as_of(args.as_of)
    in_range(args.chunk_size, "--chunk-size", 1, 200_000)
    in_range(args.workers, "--workers", 1, 256)
    app = build_app()
    app.require_schema()
    app.config  # noqa: B018 - a bad config fails here with every problem listed
    summary = run_cycle_flow(as_of, args.dry_run, args.chunk_size, args.workers)
    if args.json:
        print_json(summary)
    else:
        print_summary(summary, console())
    return EXIT_OK


def add_commands(sub) -> None:
    """`cycle`."""
    c = sub.add_parser("cycle", help="run the daily nurture cycle (a Prefect flow run)",
                       description="Score, segment, route and email every due lead. Safe to "
                                   "re-run: the same day never sends a step twice.")
    c.add_argument("--as-of", help="ISO datetime the cycle runs at (default now)")
    c.add_argument("--dry-run", action="store_true", help="decide and report; write nothing")
    c.add_argument("--chunk-size", type=int, help="leads per Prefect task")
    c.add_argument("--workers", type=int, metavar="N",
                   help="chunks worked on at once (default NURTURE_WORKERS, 1). Above 1: a "
                        "local Dask cluster of N processes on PostgreSQL, N threads on "
                        "SQLite, or the scheduler at NURTURE_DASK_ADDRESS")
    c.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    c.set_defaults(func=cmd_cycle)
