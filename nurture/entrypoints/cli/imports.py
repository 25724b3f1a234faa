"""`nurture import-leads` and `nurture activities import`: files into the lead store,
with a progress line on a terminal and bad rows quarantined."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from nurture.entrypoints.cli.common import EXIT_OK, build_app, console, print_json


def _progress(label: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    """(tick, stop): a spinner with a row count on a terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        return (lambda n: None), (lambda: None)
    # deferred: rich costs ~30 ms of `nurture --help`
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn(f"{label}: {{task.completed:,}} rows"),
                   TimeElapsedColumn(), transient=True, console=console(stderr=True))
    bar.start()
    task = bar.add_task(label, total=None)
    return (lambda n: bar.update(task, completed=n)), bar.stop


def _print_import(report, as_json: bool, what: str) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    from rich.table import Table  # deferred: rich costs ~30 ms of `nurture --help`

    table = Table(title=f"Imported {what} from {report.file}", title_justify="left")
    table.add_column("rows read", justify="right")
    table.add_column("inserted", justify="right")
    table.add_column("updated" if what == "leads" else "duplicates", justify="right")
    if what == "activities":
        table.add_column("new leads", justify="right")
    table.add_column("quarantined", justify="right")
    cells = [report.read, report.inserted,
             report.updated if what == "leads" else report.duplicates]
    if what == "activities":
        cells.append(report.leads_created)
    cells.append(report.quarantined)
    table.add_row(*[f"{c:,}" for c in cells])
    out = console()
    out.print(table)
    if report.quarantined:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.reasons.items()))
        out.print(f"[yellow]{report.quarantined} bad row(s) quarantined to "
                  f"{report.quarantine_file}[/yellow] ({reasons}); fix and re-import them.")


def _run_import(args: argparse.Namespace, importer, what: str) -> int:
    """Shared by both importers: progress on a terminal, a table or `--json` after."""
    app = build_app()
    app.require_schema()
    tick, stop = _progress(f"importing {what}")
    try:
        report = importer(app.store, Path(args.file),
                          Path(args.quarantine) if args.quarantine else None, tick)
    finally:
        stop()
    _print_import(report, args.json, what)
    return EXIT_OK


def cmd_import_leads(args: argparse.Namespace) -> int:
    # deferred: the importer imports SQLAlchemy (`nurture --help` stays fast)
    from nurture.services.ingest import import_leads_csv

    return _run_import(args, import_leads_csv, "leads")


def cmd_activities_import(args: argparse.Namespace) -> int:
    # deferred: the importer imports SQLAlchemy (`nurture --help` stays fast)
    from nurture.services.ingest import import_activities_jsonl

    return _run_import(args, import_activities_jsonl, "activities")


def add_commands(sub) -> None:
    """`import-leads` and `activities import`."""
    il = sub.add_parser("import-leads", help="upsert leads from a CSV file by email",
                        description="Upsert leads by normalised email. Rows with an invalid "
                                    "email or bad values go to a quarantine CSV with a reason.")
    il.add_argument("file", help="CSV with a header row; `email` is required")
    il.add_argument("--quarantine", help="where bad rows go (default FILE.quarantine.csv)")
    il.add_argument("--json", action="store_true", help="print counts as one JSON object")
    il.set_defaults(func=cmd_import_leads)

    act = sub.add_parser("activities", help="import activities (JSONL)")
    actsub = act.add_subparsers(dest="act_command", metavar="ACTION", required=True)
    ai = actsub.add_parser("import", help="import activities from a JSONL file",
                           description="One JSON object per line: id, email, type, "
                                       "occurred_at, properties. `id` de-duplicates.")
    ai.add_argument("file")
    ai.add_argument("--quarantine", help="where bad lines go (default FILE.quarantine.jsonl)")
    ai.add_argument("--json", action="store_true", help="print counts as one JSON object")
    ai.set_defaults(func=cmd_activities_import)
