"""`nurture webhooks replay`: apply stored provider batches and events that failed."""

from __future__ import annotations

import argparse

from nurture.entrypoints.cli.common import EXIT_FAIL, EXIT_OK, build_app, print_json


def cmd_webhooks_replay(args: argparse.Namespace) -> int:
    # deferred: the event store imports SQLAlchemy (`nurture --help` stays fast)
    from nurture.store.events import MAX_ATTEMPTS, EventStore
    from nurture.wiring import retry_provider_events

    app = build_app()
    app.require_schema()
    report = retry_provider_events(app, args.max_attempts)
    left = EventStore(app.engine).failures(args.max_attempts or MAX_ATTEMPTS)
    if args.json:
        print_json(report | {"still_failing": left})
    else:
        print(f"{report['batches']} unapplied batch(es) taken up; {report['events_applied']} "
              f"event(s) applied now, {report['events_failed']} still failing, "
              f"{report['given_up']} given up after the attempt limit (see --json); "
              f"{report['settled']} in-doubt touch(es) settled as sent; "
              f"{report['cancelled']} scheduled send(s) cancelled"
              + (f", {report['cancel_failed']} cancellation(s) failed" if
                 report["cancel_failed"] else "") + ".")
    # non-zero when something failed in this run; given-up events are listed, not re-failed
    return EXIT_OK if not (report["events_failed"] or report["cancel_failed"]) else EXIT_FAIL


def add_commands(sub) -> None:
    """`webhooks replay`."""
    wh = sub.add_parser("webhooks", help="provider webhook batches")
    whsub = wh.add_subparsers(dest="wh_command", metavar="ACTION", required=True)
    wr = whsub.add_parser("replay", help="apply stored batches and events whose application "
                          "failed", description="Raw batches are stored before they are "
                          "applied; this applies any that are not, retries events kept as "
                          "`error` (events apply once each; given up after --max-attempts) and "
                          "cancels scheduled sends to suppressed addresses. The daily cycle "
                          "and instant routing do the same on every run.")
    wr.add_argument("--json", action="store_true", help="print the outcome as JSON")
    wr.add_argument("--max-attempts", type=int, default=None,
                    help="attempts per event before it is left listed (default 5)")
    wr.set_defaults(func=cmd_webhooks_replay)
