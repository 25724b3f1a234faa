"""`nurture handoffs list|deliver`: MQL handoffs to sales and the CRM webhook."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import datetime

from nurture.entrypoints.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CliError,
    build_app,
    console,
    print_json,
)


def cmd_handoffs_list(args: argparse.Namespace) -> int:
    # deferred: the sales store imports SQLAlchemy (`nurture --help` stays fast)
    from nurture.store.sales import SalesStore

    app = build_app()
    app.require_schema()
    rows = SalesStore(app.engine).handoffs(args.status)
    if args.csv:
        cols = ["email", "company", "source", "owner", "status", "created_at", "sla_due_at",
                "resolved_at", "outcome_reason", "score", "grade", "rule", "reason", "note",
                "lifecycle_stage", "recycle_count"]
        w = csv.DictWriter(sys.stdout, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (v.isoformat() if isinstance(v, datetime) else v)
                        for k, v in r.items()})
        return EXIT_OK
    from rich.table import Table  # deferred: rich costs ~30 ms of `nurture --help`

    table = Table(title=f"Handoffs{' (' + args.status + ')' if args.status else ''}: "
                  f"{len(rows)}", title_justify="left")
    for col in ("lead", "owner", "status", "handed over", "SLA due", "resolved", "outcome",
                "score"):
        table.add_column(col, justify="right" if col == "score" else "left")
    for r in rows:
        table.add_row(r["email"], r["owner"], r["status"], f"{r['created_at']:%Y-%m-%d %H:%M}",
                      f"{r['sla_due_at']:%Y-%m-%d %H:%M}",
                      f"{r['resolved_at']:%Y-%m-%d %H:%M}" if r["resolved_at"] else "",
                      r["outcome_reason"] or "", f"{r['score']:.0f}" if r["score"] else "")
    console().print(table)
    return EXIT_OK


def cmd_handoffs_deliver(args: argparse.Namespace) -> int:
    from nurture.wiring import deliver_handoffs  # deferred: the engine (--help)

    app = build_app()
    app.require_schema()
    out = deliver_handoffs(app)
    if out is None:
        raise CliError("no CRM webhook is configured: set NURTURE_HANDOFF_WEBHOOK_URL")
    if args.json:
        print_json(out)
    else:
        print(f"{out['due']} handoff(s) due: {out['delivered']} delivered, "
              f"{out['retrying']} will be retried.")
    return EXIT_OK if out["retrying"] == 0 else EXIT_FAIL


def add_commands(sub) -> None:
    """`handoffs list` and `handoffs deliver`."""
    ho = sub.add_parser("handoffs", help="MQL handoffs to sales")
    hosub = ho.add_subparsers(dest="ho_command", metavar="ACTION", required=True)
    hl = hosub.add_parser("list", help="list handoffs (owner, SLA, outcome)")
    hl.add_argument("--status", choices=["pending", "accepted", "rejected", "expired"])
    hl.add_argument("--csv", action="store_true", help="CSV on stdout (for a CRM or sheet)")
    hl.set_defaults(func=cmd_handoffs_list)
    hd = hosub.add_parser("deliver", help="push pending handoffs to the CRM webhook now",
                          description="POST each pending MQL handoff, signed, to "
                                      "NURTURE_HANDOFF_WEBHOOK_URL; failures stay pending and "
                                      "are retried with backoff (the cycle does this too).")
    hd.add_argument("--json", action="store_true", help="print counts as JSON")
    hd.set_defaults(func=cmd_handoffs_deliver)
