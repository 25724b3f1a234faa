"""The `nurture` command line. Every command has `--help`; failures are one clear sentence.

Each command group lives in its own module with `add_commands(subparsers)` and its `cmd_*`
functions; this module builds the top-level parser from them and turns the expected
failures into one sentence and exit status 1."""

from __future__ import annotations

import argparse
import sys

from nurture.entrypoints.cli import (
    campaign_status,
    campaigns,
    cycle,
    db,
    devtools,
    handoffs,
    imports,
    leads,
    reports,
    results,
    sales,
    serve,
    touches,
    webhooks,
)
from nurture.entrypoints.cli.common import EXIT_FAIL, CliError, quiet_prefect

__all__ = ["CliError", "build_parser", "main"]

# in the order `nurture --help` lists the commands
COMMAND_GROUPS = (
    db.add_commands,                # db upgrade
    campaigns.add_commands,         # validate, preview, test-send, simulate
    imports.add_commands,           # import-leads, activities import
    cycle.add_commands,             # cycle
    leads.add_commands,             # lead show
    devtools.add_commands,          # demo
    serve.add_commands,             # serve
    devtools.add_fake_sendgrid,     # fake-sendgrid
    webhooks.add_commands,          # webhooks replay
    sales.add_commands,             # sales accept|reject|opportunity|won|lost
    handoffs.add_commands,          # handoffs list|deliver
    touches.add_commands,           # touches list|release
    reports.add_commands,           # report funnel|steps|ab|sources|attribution|…
    campaign_status.add_commands,   # campaign list|pause|resume
    results.add_commands,           # costs import
)


def build_parser() -> argparse.ArgumentParser:
    """The whole `nurture` parser; each command's `func` runs it."""
    p = argparse.ArgumentParser(
        prog="nurture",
        description="Lead-nurture campaign orchestration: campaigns as config, a daily cycle "
                    "that scores, segments, emails and routes leads. Settings come from "
                    "NURTURE_* environment variables or a .env file (see README).")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's run logs")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_commands in COMMAND_GROUPS:
        add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; expected failures print one sentence on stderr and exit 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_prefect(args.verbose)
    # deferred: these exception types come with SQLAlchemy and the engine, which
    # `nurture --help` (it exits in parse_args above) should not import
    from sqlalchemy.exc import OperationalError

    from nurture.core.config import ConfigError
    from nurture.services.cycle import RunIncomplete, SendPhaseStopped
    from nurture.services.ingest import ImportFileError
    from nurture.services.runs import RunFenced
    from nurture.wiring import MissingSecret, NotMigrated

    try:
        return args.func(args)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        print(f"error: the campaign config has {len(exc.problems)} problem(s); "
              "fix them and run again (nothing was changed).", file=sys.stderr)
    except (CliError, NotMigrated, ImportFileError, MissingSecret, SendPhaseStopped,
            RunIncomplete, RunFenced) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OperationalError as exc:
        print(f"error: database error: {str(exc.orig).strip().splitlines()[0]}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; nothing is lost — run the same command again to continue.",
              file=sys.stderr)
    return EXIT_FAIL
