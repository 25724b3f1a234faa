"""`nurture serve`: the HTTP app (webhooks, unsubscribe, activity API) under uvicorn."""

from __future__ import annotations

import argparse
import gc

from nurture.entrypoints.cli.common import EXIT_OK, CliError, build_app, console, in_range


def cmd_serve(args: argparse.Namespace) -> int:
    # deferred: uvicorn and FastAPI are heavy and only this command needs them (--help)
    import uvicorn

    from nurture.entrypoints.http.app import create_app

    in_range(args.port, "--port", 1, 65535)
    app = build_app()
    app.require_schema()
    app.config  # noqa: B018 - the activity API checks types against it
    try:
        asgi = create_app(app)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    # what is built by now lives as long as the server: frozen, full garbage collections
    # (a webhook batch makes tens of thousands of objects) stop rescanning all of it
    gc.collect()
    gc.freeze()
    console(stderr=True).print(
        f"nurture app on http://{args.host}:{args.port} — webhook POST /webhooks/sendgrid, "
        "unsubscribe /unsubscribe/{token}, activities POST /activities, GET /health",
        soft_wrap=True)
    uvicorn.run(asgi, host=args.host, port=args.port, log_level=args.log_level,
                proxy_headers=True)
    return EXIT_OK


def add_commands(sub) -> None:
    """`serve`."""
    sv = sub.add_parser("serve", help="run the HTTP app (webhooks, unsubscribe, activity API)",
                        description="SendGrid Event Webhook at POST /webhooks/sendgrid, "
                                    "one-click unsubscribe at /unsubscribe/{token}, the "
                                    "activity API at POST /activities, GET /health.")
    sv.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--log-level", default="info",
                    choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=cmd_serve)
