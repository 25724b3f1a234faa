"""`nurture sales accept|reject|opportunity|won|lost`: what sales did with a lead."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from nurture.entrypoints.cli.common import EXIT_OK, CliError, build_app, parse_as_of, print_json


def cmd_sales(args: argparse.Namespace) -> int:
    # deferred: the sales store imports SQLAlchemy (`nurture --help` stays fast)
    from nurture.core.domain import LeadNotFound
    from nurture.core.sales import FeedbackRefused
    from nurture.services.feedback import record_feedback
    from nurture.store.limits import MAX_FUTURE
    from nurture.store.sales import SalesStore

    app = build_app()
    app.require_schema()

    # feedback is about what happened: at most a day ahead, as POST /sales/feedback
    at = parse_as_of(getattr(args, "at", None), "--at",
                     latest=datetime.now(UTC) + MAX_FUTURE) or datetime.now(UTC)
    try:
        result = record_feedback(SalesStore(app.engine), app.rules, args.email,
                                 args.sales_action, at, reason=getattr(args, "reason", None),
                                 note=args.note, actor=args.actor,
                                 amount=getattr(args, "amount", None))
    except FeedbackRefused as exc:
        raise CliError(f"{args.email}: {exc.door_message('--{}')}") from None
    except LeadNotFound as exc:
        raise CliError(f"{args.email}: {exc}") from None
    if args.json:
        print_json(result)
    else:
        extra = (f"; back to nurture on {result['recycle_until'][:10]}"
                 if result["recycle_until"] and result["to"] == "recycled" else "")
        print(f"{result['email']}: {result['from']} → {result['to']} ({result['reason']})"
              f"{extra}.")
    return EXIT_OK


def add_commands(sub) -> None:
    """`sales` with one action per kind of feedback."""
    sales = sub.add_parser("sales", help="record sales feedback on a lead",
                           description="What sales did with a lead it was handed. Reject "
                                       "reason codes come from routing.sales_rejected in "
                                       "lifecycle.yaml.")
    salessub = sales.add_subparsers(dest="sales_action", metavar="ACTION", required=True)
    helps = {"accept": "sales accepts an MQL (mql → sal)",
             "reject": "sales rejects a lead: recycled or disqualified per the reason code",
             "opportunity": "sales opened an opportunity", "won": "the opportunity was won",
             "lost": "the opportunity was lost: the lead rests, then is nurtured again"}
    for action, text in helps.items():
        sp = salessub.add_parser(action, help=text, description=text)
        sp.add_argument("email")
        if action in ("reject", "lost"):
            sp.add_argument("--reason", required=action == "reject",
                            help="reason code from routing.sales_rejected")
        if action in ("opportunity", "won"):
            sp.add_argument("--amount", type=float,
                            help="deal value (pipeline for opportunity, revenue for won)")
        sp.add_argument("--note", help="free text kept on the transition and handoff")
        sp.add_argument("--actor", default=os.environ.get("USER", "sales"),
                        help="who gives the feedback (default $USER)")
        sp.add_argument("--at", help="when (ISO datetime; default now)")
        sp.add_argument("--json", action="store_true", help="print the outcome as JSON")
        sp.set_defaults(func=cmd_sales)
