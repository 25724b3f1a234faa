"""`nurture report …`: reports over the lead store. `add_commands(sub)` adds `report`
with `funnel` here and the results reports of results.py."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from nurture.entrypoints.cli.common import EXIT_OK, build_app, console, parse_as_of, print_json
from nurture.entrypoints.cli.results import add_report_commands

FUNNEL_HELP = """\
The lead funnel as it stood at --as-of (default now): leads per lifecycle stage, how many
ever reached each stage and converted to the next, median days in each stage, MQL handoffs
(acceptance rate, SLA compliance), sales rejects by reason, MQLs by lead source and recycles
by reason. A lead counts as having reached a stage only if its transitions say it entered it
(a lead that skipped a stage is not counted there). Rates are of leads that reached the
earlier stage; SLA compliance is accepted-before-the-deadline over handoffs that are resolved
or past their deadline."""


def cmd_report_funnel(args: argparse.Namespace) -> int:
    # deferred: the queries import SQLAlchemy, the tables rich (`nurture --help` stays fast)
    from nurture.entrypoints.cli.tables import print_funnel
    from nurture.store.funnel_queries import funnel_report

    as_of = parse_as_of(args.as_of) or datetime.now(UTC)
    app = build_app()
    app.require_schema()
    report = funnel_report(app.engine, as_of)
    if args.json:
        print_json(report)
    else:
        print_funnel(report, console())
    return EXIT_OK


def add_commands(sub) -> None:
    """Add `report` (with `funnel`) to the top-level subparsers `sub`."""
    rep = sub.add_parser("report", help="reports over the lead store (funnel, steps, ab, "
                         "sources, attribution, deliverability, html)",
                         description="Reports over the lead store.")
    repsub = rep.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    f = repsub.add_parser("funnel", help="leads per stage, conversion, MQL acceptance and SLA",
                          description=FUNNEL_HELP)
    f.add_argument("--as-of", help="ISO date or datetime the funnel is measured at "
                                   "(default now; a date means its midnight UTC)")
    f.add_argument("--json", action="store_true", help="print the report as one JSON object")
    f.set_defaults(func=cmd_report_funnel)
    add_report_commands(repsub)
