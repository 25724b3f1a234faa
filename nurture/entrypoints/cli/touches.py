"""`nurture touches list|release`: the send ledger's in-doubt and failed touches."""

from __future__ import annotations

import argparse
import os

from nurture.entrypoints.cli.common import EXIT_OK, CliError, build_app, console, print_json


def cmd_touches_list(args: argparse.Namespace) -> int:
    app = build_app()
    app.require_schema()
    statuses = args.status or ["in_doubt", "failed"]
    rows = app.store.ledger.with_status(statuses, args.limit)
    if args.json:
        print_json({"statuses": statuses, "touches": rows})
        return EXIT_OK
    from rich.table import Table  # deferred: rich costs ~30 ms of `nurture --help`

    table = Table(title=f"Touches {', '.join(statuses)}: {len(rows)}", title_justify="left")
    for col in ("id", "lead", "campaign / step", "status", "attempts", "slot", "why"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["id"]), r["email"], f"{r['campaign']} / {r['step']}"
                      + (f" (round {r['round']})" if r["round"] else ""), r["status"],
                      str(r["attempts"]), f"{r['send_at']:%Y-%m-%d %H:%M}", r["error"] or "")
    console().print(table)
    if rows:
        console().print("Put chosen ones back with `nurture touches release ID ...` "
                         "(they are sent by the next cycle).")
    return EXIT_OK


def cmd_touches_release(args: argparse.Namespace) -> int:
    app = build_app()
    app.require_schema()
    ids = list(args.ids)
    if args.all:
        chosen = app.store.ledger.with_status(args.status or ["in_doubt"], 1_000_000)
        ids += [r["id"] for r in chosen]
    if not ids:
        raise CliError("name touch ids, or --all with --status")
    done = app.store.ledger.release(ids, args.status or ["in_doubt", "failed"],
                                    f"person:{args.actor}")
    skipped = sorted(set(ids) - set(done))
    if args.json:
        print_json({"released": done, "not_released": skipped})
    else:
        print(f"{len(done)} touch(es) released: planned again, sent by the next cycle."
              + (f" Not in doubt or failed (left alone): {', '.join(map(str, skipped))}."
                 if skipped else ""))
    return EXIT_OK


def add_commands(sub) -> None:
    """`touches list` and `touches release`."""
    tc = sub.add_parser("touches", help="the send ledger: in-doubt and failed touches",
                        description="Touches whose outcome is in doubt (a crash or timeout "
                                    "mid-send, not yet settled by provider events) or that "
                                    "failed for good. Releasing one sends it at the next "
                                    "cycle — a person's decision, since an in-doubt touch "
                                    "may already have reached the lead.")
    tcsub = tc.add_subparsers(dest="touches_command", metavar="ACTION", required=True)
    tl = tcsub.add_parser("list", help="list in-doubt / failed touches")
    tl.add_argument("--status", action="append", choices=["in_doubt", "failed", "planned",
                                                          "sending", "sent", "cancelled"],
                    help="repeatable; default in_doubt and failed")
    tl.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    tl.add_argument("--json", action="store_true", help="print as one JSON object")
    tl.set_defaults(func=cmd_touches_list)
    tr = tcsub.add_parser("release", help="put in-doubt or failed touches back to planned")
    tr.add_argument("ids", nargs="*", type=int, help="touch ids (see `touches list`)")
    tr.add_argument("--all", action="store_true", help="every touch with --status")
    tr.add_argument("--status", action="append", choices=["in_doubt", "failed"],
                    help="which statuses may be released (default both)")
    tr.add_argument("--actor", default=os.environ.get("USER", "operator"),
                    help="who decides (kept on the touch)")
    tr.add_argument("--json", action="store_true", help="print the outcome as JSON")
    tr.set_defaults(func=cmd_touches_release)
