"""`nurture campaign list|pause|resume`: whether a campaign may plan and send."""

from __future__ import annotations

import argparse
import os

from nurture.entrypoints.cli.common import EXIT_FAIL, EXIT_OK, CliError, build_app, print_json


def cmd_campaign(args: argparse.Namespace) -> int:
    from nurture.store.pauses import CampaignStatus  # deferred: SQLAlchemy (--help)

    app = build_app()
    app.require_schema()
    status = CampaignStatus(app.engine)
    known = {c.campaign.name for c in app.rules.campaigns}
    action = args.campaign_command
    if action == "list":
        rows = {r["campaign"]: r for r in status.list()}
        out = [{"campaign": n, "status": rows.get(n, {}).get("status", "active"),
                "reason": rows.get(n, {}).get("reason"),
                "paused_at": rows.get(n, {}).get("paused_at"),
                "resumed_at": rows.get(n, {}).get("resumed_at")}
               for n in sorted(known | set(rows))]
        if args.json:
            print_json(out)
        else:
            for r in out:
                print(f"{r['campaign']}: {r['status']}"
                      + (f" since {r['paused_at']:%Y-%m-%d %H:%M} — {r['reason']}"
                         if r["status"] == "paused" and r["paused_at"] else ""))
        return EXIT_OK
    if args.name not in known and args.name not in {r["campaign"] for r in status.list()}:
        raise CliError(f"unknown campaign {args.name!r}; known: {', '.join(sorted(known))}")
    if action == "pause":
        n = status.pause(args.name, args.reason or "paused by hand", f"user:{args.actor}")
        print(f"{args.name}: " + ("paused." if n else "was already paused."))
        return EXIT_OK if n else EXIT_FAIL
    ok = status.resume(args.name, f"user:{args.actor}")
    print(f"{args.name}: " + ("resumed; the guard judges it on sends from now on."
                              if ok else "was not paused."))
    return EXIT_OK if ok else EXIT_FAIL


def add_commands(sub) -> None:
    """`campaign list`, `campaign pause NAME` and `campaign resume NAME`."""
    cp = sub.add_parser("campaign", help="campaign status: list, pause, resume")
    cpsub = cp.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    ls = cpsub.add_parser("list", help="every campaign and whether it is paused")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_campaign)
    for action, text in (("pause", "pause a campaign: nothing more is planned or sent"),
                         ("resume", "resume a paused campaign")):
        sp = cpsub.add_parser(action, help=text, description=text)
        sp.add_argument("name")
        if action == "pause":
            sp.add_argument("--reason")
        sp.add_argument("--actor", default=os.environ.get("USER", "ops"))
        sp.set_defaults(func=cmd_campaign)
