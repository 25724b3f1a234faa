"""The `nurture` command line. Every command has `--help`; failures are one clear sentence."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL = 0, 1


class CliError(Exception):
    """An expected failure: printed as one sentence, exit status 1."""


def _quiet_prefect(verbose: bool = False) -> None:
    """Keep a newcomer's terminal free of Prefect's start-up chatter and telemetry noise.

    Only defaults: anything the user set in the environment wins."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _app(args: argparse.Namespace | None = None, **overrides: Any):
    from pydantic import ValidationError

    from nurture.settings import Settings
    from nurture.wiring import App

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: "
                             f"{e['msg']}" for e in exc.errors())
        raise CliError(f"invalid settings: {problems}") from None
    return App(settings)


def _parse_as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--as-of {value!r} is not an ISO 8601 date or datetime "
                       "(e.g. 2026-11-23T08:00:00Z)") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str, sort_keys=False))


# -- commands ------------------------------------------------------------------------------
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from lead_store.db import current_revision, upgrade

    app = _app()
    upgrade(app.engine)
    _console().print(f"Database {app.settings.database_url} is at revision "
                     f"{current_revision(app.engine)} (up to date).")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from nurture.validation import validate

    app = _app()
    campaigns = Path(args.dir) if args.dir else app.settings.campaigns_dir
    templates = Path(args.templates) if args.templates else app.settings.templates_dir
    config, problems = validate(campaigns, templates)
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) found.", file=sys.stderr)
        return EXIT_FAIL
    assert config is not None
    steps = sum(len(t.steps) for c in config.campaigns for t in c.tracks)
    print(f"OK: {campaigns}: lifecycle.yaml and {len(config.campaigns)} campaign(s) "
          f"({', '.join(c.name for c in config.campaigns)}), {steps} steps; every template "
          "renders for a sample lead.")
    return EXIT_OK


def _progress(label: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    if not sys.stderr.isatty():
        return (lambda n: None), (lambda: None)
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn(f"{label}: {{task.completed:,}} rows"),
                   TimeElapsedColumn(), transient=True, console=_console(stderr=True))
    bar.start()
    task = bar.add_task(label, total=None)
    return (lambda n: bar.update(task, completed=n)), bar.stop


def _print_import(report, as_json: bool, what: str) -> None:
    if as_json:
        _print_json(report.as_dict())
        return
    from rich.table import Table

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
    console = _console()
    console.print(table)
    if report.quarantined:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.reasons.items()))
        console.print(f"[yellow]{report.quarantined} bad row(s) quarantined to "
                      f"{report.quarantine_file}[/yellow] ({reasons}); fix and re-import them.")


def cmd_import_leads(args: argparse.Namespace) -> int:
    from nurture.imports import import_leads_csv

    app = _app()
    app.require_schema()
    tick, stop = _progress("importing leads")
    try:
        report = import_leads_csv(app.store, Path(args.file),
                                  Path(args.quarantine) if args.quarantine else None, tick)
    finally:
        stop()
    _print_import(report, args.json, "leads")
    return EXIT_OK


def cmd_activities_import(args: argparse.Namespace) -> int:
    from nurture.imports import import_activities_jsonl

    app = _app()
    app.require_schema()
    tick, stop = _progress("importing activities")
    try:
        report = import_activities_jsonl(app.store, Path(args.file),
                                         Path(args.quarantine) if args.quarantine else None,
                                         tick)
    finally:
        stop()
    _print_import(report, args.json, "activities")
    return EXIT_OK


def run_cycle_flow(as_of: datetime | None, dry_run: bool, chunk_size: int | None
                   ) -> dict[str, Any]:
    """Run the daily flow in-process (Prefect starts a temporary server if none is set)."""
    from flows.daily_cycle import daily_nurture_cycle

    return daily_nurture_cycle(as_of=as_of.isoformat() if as_of else None, dry_run=dry_run,
                               chunk_size=chunk_size)


def cmd_cycle(args: argparse.Namespace) -> int:
    from nurture.report import print_summary

    as_of = _parse_as_of(args.as_of)
    app = _app()
    app.require_schema()
    app.config  # noqa: B018 - a bad config fails here with every problem listed
    summary = run_cycle_flow(as_of, args.dry_run, args.chunk_size)
    if args.json:
        _print_json(summary)
    else:
        print_summary(summary, _console())
    return EXIT_OK


def cmd_lead_show(args: argparse.Namespace) -> int:
    from nurture.leads import LeadNotFound, explain_lead, print_lead

    app = _app()
    app.require_schema()
    try:
        info = explain_lead(app.store, app.rules, args.email, app.settings.default_timezone,
                            _parse_as_of(args.as_of))
    except LeadNotFound as exc:
        raise CliError(str(exc)) from None
    if args.json:
        _print_json(info)
    else:
        print_lead(info, _console())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from nurture.demo import run_demo

    return run_demo(Path(args.dir), leads=args.leads, days=args.days, seed=args.seed,
                    as_json=args.json)


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nurture",
        description="Lead-nurture campaign orchestration: campaigns as config, a daily cycle "
                    "that scores, segments, emails and routes leads. Settings come from "
                    "NURTURE_* environment variables or a .env file (see README).")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's run logs")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    db = sub.add_parser("db", help="manage the lead store database")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="create or migrate the database schema (Alembic)")
    up.set_defaults(func=cmd_db_upgrade)

    v = sub.add_parser("validate", help="check campaigns and templates; exit 1 on problems",
                       description="Validate lifecycle.yaml, every campaign file and every "
                                   "template (rendered for a sample lead). Problems print as "
                                   "path:line: key.path: message.")
    v.add_argument("dir", nargs="?", help="campaigns directory (default NURTURE_CAMPAIGNS_DIR)")
    v.add_argument("--templates", help="templates directory (default NURTURE_TEMPLATES_DIR)")
    v.set_defaults(func=cmd_validate)

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

    c = sub.add_parser("cycle", help="run the daily nurture cycle (a Prefect flow run)",
                       description="Score, segment, route and email every due lead. Safe to "
                                   "re-run: the same day never sends a step twice.")
    c.add_argument("--as-of", help="ISO datetime the cycle runs at (default now)")
    c.add_argument("--dry-run", action="store_true", help="decide and report; write nothing")
    c.add_argument("--chunk-size", type=int, help="leads per Prefect task")
    c.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    c.set_defaults(func=cmd_cycle)

    lead = sub.add_parser("lead", help="inspect leads")
    leadsub = lead.add_subparsers(dest="lead_command", metavar="ACTION", required=True)
    ls = leadsub.add_parser("show", help="stages, scores, touches and transitions of a lead")
    ls.add_argument("email")
    ls.add_argument("--as-of", help="compute scores as of this ISO datetime (default now)")
    ls.add_argument("--json", action="store_true", help="print as one JSON object")
    ls.set_defaults(func=cmd_lead_show)

    d = sub.add_parser("demo", help="build a demo database and simulate several days",
                       description="Creates a fresh demo database of synthetic leads and "
                                   "activity histories (seeded), runs the daily cycle for "
                                   "several simulated days and shows the outcome and the "
                                   "outbox of rendered emails.")
    d.add_argument("--dir", default="nurture-demo", help="where the demo lives (recreated)")
    d.add_argument("--leads", type=int, default=2000, help="number of synthetic leads")
    d.add_argument("--days", type=int, default=14, help="simulated days of daily cycles")
    d.add_argument("--seed", type=int, default=7, help="random seed (same seed, same demo)")
    d.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_prefect(args.verbose)
    from sqlalchemy.exc import OperationalError

    from nurture.config import ConfigError
    from nurture.imports import ImportFileError
    from nurture.wiring import NotMigrated

    try:
        return args.func(args)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        print(f"error: the campaign config has {len(exc.problems)} problem(s); "
              "fix them and run again (nothing was changed).", file=sys.stderr)
    except (CliError, NotMigrated, ImportFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OperationalError as exc:
        print(f"error: database error: {str(exc.orig).strip().splitlines()[0]}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; nothing is lost — run the same command again to continue.",
              file=sys.stderr)
    return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
