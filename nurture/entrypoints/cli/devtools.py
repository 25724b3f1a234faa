"""Developer tools: `nurture demo` (a demo database and simulated days) and
`nurture fake-sendgrid` (a local stand-in for SendGrid's API)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nurture.entrypoints.cli.common import EXIT_OK, CliError, build_app, console, in_range
from nurture.entrypoints.cli.cycle import run_cycle_flow


def cmd_demo(args: argparse.Namespace) -> int:
    # deferred: the demo imports the engine, SQLAlchemy and rich (--help stays fast)
    from nurture.devtools.demo import DemoError, run_demo
    from nurture.entrypoints.cli.tables import print_demo_outcome

    in_range(args.leads, "--leads", 1, 1_000_000)
    in_range(args.days, "--days", 1, 366)
    in_range(args.seed, "--seed", 0, 2**63 - 1)
    try:
        outcome = run_demo(Path(args.dir), build_app, run_cycle_flow, leads=args.leads,
                           days=args.days, seed=args.seed, as_json=args.json)
    except DemoError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(outcome, default=str))
    else:
        print_demo_outcome(console(), outcome)
    return EXIT_OK


def cmd_fake_sendgrid(args: argparse.Namespace) -> int:
    # deferred: the fake server imports its HTTP and crypto stack, and threading alone
    # adds ~1 ms to `nurture --help`
    import threading

    from nurture.devtools.fake_sendgrid import FakeSendGrid

    in_range(args.port, "--port", 0, 65535)
    in_range(args.latency_ms, "--latency-ms", 0, 600_000)
    try:
        fake = FakeSendGrid(api_key=args.api_key, host=args.host, port=args.port,
                            schema_path=Path(args.schema) if args.schema else None,
                            validate=not args.no_schema,
                            latency=args.latency_ms / 1000.0,
                            log_path=Path(args.log) if args.log else None,
                            fault_rate=args.fault_rate, fault_seed=args.fault_seed,
                            fault_delay=args.fault_delay).start()
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    print(f"Fake SendGrid listening on {fake.url} (Ctrl-C to stop). Point nurture at it:")
    print("  export NURTURE_TRANSPORT=sendgrid")
    print(f"  export NURTURE_SENDGRID_HOST={fake.url}")
    print(f"  export SENDGRID_API_KEY={fake.api_key}")
    print(f"  export NURTURE_SENDGRID_WEBHOOK_PUBLIC_KEY={fake.public_key}")
    print("Post signed events for what it received to a running `nurture serve`:")
    print(f"  curl -X POST {fake.url}/__fake__/events -d '{{\"url\": "
          "\"http://127.0.0.1:8000/webhooks/sendgrid\", \"kinds\": [\"delivered\", "
          "\"open\", \"click\"]}'", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()
        print(f"stopped; it accepted {len(fake.messages)} message(s).")
    return EXIT_OK


def add_commands(sub) -> None:
    """`demo`."""
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


def add_fake_sendgrid(sub) -> None:
    """`fake-sendgrid` (added apart from `demo` so `nurture --help` keeps its order)."""
    fk = sub.add_parser("fake-sendgrid", help="run a fake SendGrid API on loopback",
                        description="For local development: speaks POST /v3/mail/send, "
                                    "validates bodies against nurture's own schema of "
                                    "the Mail Send fields it sends (or --schema), "
                                    "answers 202 with X-Message-Id and posts signed Event "
                                    "Webhook batches on request.")
    fk.add_argument("--host", default="127.0.0.1")
    fk.add_argument("--port", type=int, default=3030, help="port (default 3030)")
    fk.add_argument("--api-key", default="SG.fake-local-key", help="the key it accepts")
    fk.add_argument("--schema", help="validate against this schema instead: a JSON Schema "
                                     "or SendGrid's official tsg_mail_v3.json (default: "
                                     "$NURTURE_FAKE_SENDGRID_SCHEMA, else nurture's own)")
    fk.add_argument("--no-schema", action="store_true",
                    help="skip schema validation")
    fk.add_argument("--latency-ms", type=float, default=0.0,
                    help="delay every answer, like a real API across the internet")
    fk.add_argument("--log", metavar="FILE",
                    help="append one JSON line per accepted message (touch_id, to, "
                         "campaign, step, variant, time)")
    fk.add_argument("--fault-rate", type=float, default=0.0, metavar="R",
                    help="answer this share of requests (0-1) with a random fault: 429, "
                         "500, 503 or a --fault-delay answer (accepted, but late)")
    fk.add_argument("--fault-delay", type=float, default=2.0, metavar="SECONDS",
                    help="delay of the timeout fault (default 2; set above the client's "
                         "NURTURE_SENDGRID_TIMEOUT_SECONDS)")
    fk.add_argument("--fault-seed", type=int, default=None, help="seed of the fault draws")
    fk.set_defaults(func=cmd_fake_sendgrid)
