"""`nurture lead show`: everything about one lead, and why it is where it is."""

from __future__ import annotations

import argparse

from nurture.entrypoints.cli.common import (
    EXIT_OK,
    CliError,
    build_app,
    console,
    parse_as_of,
    print_json,
)


def cmd_lead_show(args: argparse.Namespace) -> int:
    # deferred: the lead view imports the engine, the tables import rich (--help)
    from nurture.entrypoints.cli.tables import print_lead
    from nurture.services.lead_view import LeadNotFound, explain_lead

    app = build_app()
    app.require_schema()
    try:
        info = explain_lead(app.store, app.rules, args.email, app.settings.default_timezone,
                            parse_as_of(args.as_of))
    except LeadNotFound as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print_json(info)
    else:
        print_lead(info, console())
    return EXIT_OK


def add_commands(sub) -> None:
    """`lead show`."""
    lead = sub.add_parser("lead", help="inspect leads")
    leadsub = lead.add_subparsers(dest="lead_command", metavar="ACTION", required=True)
    ls = leadsub.add_parser("show", help="stages, scores, touches and transitions of a lead")
    ls.add_argument("email")
    ls.add_argument("--as-of", help="compute scores as of this ISO datetime (default now)")
    ls.add_argument("--json", action="store_true", help="print as one JSON object")
    ls.set_defaults(func=cmd_lead_show)
