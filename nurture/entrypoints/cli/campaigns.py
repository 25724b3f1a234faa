"""Working on the campaign config: `nurture validate`, `preview`, `test-send` and
`simulate` (what-if runs on a scratch copy)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nurture.entrypoints.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CliError,
    build_app,
    parse_as_of,
    print_json,
)


def cmd_validate(args: argparse.Namespace) -> int:
    # deferred: the validator loads pydantic and jinja2 (`nurture --help` stays fast)
    from nurture.services.lint import format_problems
    from nurture.services.validation import validate

    app = build_app()
    campaigns = Path(args.dir) if args.dir else app.settings.campaigns_dir
    templates = Path(args.templates) if args.templates else app.settings.templates_dir
    config, problems = validate(campaigns, templates)
    fmt = getattr(args, "format", "text")
    if fmt != "text":
        print(format_problems(problems, fmt))
        return EXIT_FAIL if problems else EXIT_OK
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) found.", file=sys.stderr)
        return EXIT_FAIL
    assert config is not None
    steps = sum(len(t.steps) for c in config.campaigns for t in c.tracks)
    print(f"OK: {campaigns}: lifecycle.yaml and {len(config.campaigns)} campaign(s) "
          f"({', '.join(c.name for c in config.campaigns)}), {steps} steps; every template "
          "renders for a sample lead.")
    return EXIT_OK


def _store_lead(app, email: str) -> dict:
    """A real lead's fields from the store, to render with."""
    from nurture.core.domain import normalise_email  # deferred with the engine (--help)

    detail = app.store.lead_detail(normalise_email(email))
    if detail is None:
        raise CliError(f"no lead with email {email!r} in the store")
    return detail["fields"]


def cmd_preview(args: argparse.Namespace) -> int:
    # deferred: config, rendering and the gallery import pydantic and jinja2 (--help)
    from nurture.core.config import load_config
    from nurture.core.rendering import Renderer
    from nurture.views.preview import build_preview

    app = build_app()
    config = load_config(app.settings.campaigns_dir)
    unknown = [c for c in args.campaigns if config.campaign(c) is None]
    if unknown:
        raise CliError(f"unknown campaign(s): {', '.join(unknown)}; the config has "
                       f"{', '.join(c.name for c in config.campaigns)}")
    real = []
    if args.lead:
        app.require_schema()
        real = [_store_lead(app, email) for email in args.lead]
    personas = args.personas or not args.lead
    out = build_preview(config, Renderer(app.settings.templates_dir), Path(args.out),
                        app.settings.public_url, args.campaigns or None, real, personas)
    if args.json:
        print_json(out)
    else:
        print(f"{out['emails']} email(s) × {out['leads']} persona(s)/lead(s) = "
              f"{out['renderings']} renderings, {out['warnings']} warning(s), "
              f"{out['render_errors']} render error(s) in {out['seconds']} s.")
        print(f"Open {out['index']} in a browser.")
    return EXIT_OK


def _test_lead(app, args: argparse.Namespace) -> dict:
    from nurture.core.personas import persona  # deferred with the engine (--help)

    if args.as_lead:
        app.require_schema()
        return _store_lead(app, args.as_lead)
    try:
        return persona(args.persona or "grade-b-research").lead
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None


def _print_test_sends(sent, transport_name: str, as_json: bool) -> None:
    if as_json:
        print_json([{"to": s.to, "step": s.step, "variant": s.variant, "subject": s.subject,
                     "ok": s.delivery.ok, "message_id": s.delivery.message_id,
                     "error": s.delivery.error} for s in sent])
        return
    for s in sent:
        state = "sent" if s.delivery.ok else f"FAILED: {s.delivery.error}"
        print(f"{s.to}: {s.subject} ({s.step}{'/' + s.variant if s.variant else ''}) "
              f"via {transport_name}: {state}")
    print("Test sends are not recorded in the ledger or counted in reports.")


def cmd_test_send(args: argparse.Namespace) -> int:
    # deferred: rendering and the transports import jinja2 and httpx (--help)
    from nurture.core.config import load_config
    from nurture.core.rendering import Renderer
    from nurture.services.testsend import TestSendRefused, build_test_messages, send
    from nurture.wiring import build_transport

    app = build_app()
    config = load_config(app.settings.campaigns_dir)
    lead = _test_lead(app, args)
    try:
        messages = build_test_messages(config, Renderer(app.settings.templates_dir),
                                       args.campaign, args.step, args.variant, args.to, lead,
                                       app.settings.public_url)
    except TestSendRefused as exc:
        raise CliError(str(exc)) from None
    settings = app.settings.model_copy(
        update={"outbox_dir": app.settings.outbox_dir / "test-sends"})
    transport = build_transport(settings)
    try:
        sent = send(transport, messages)
    finally:
        transport.close()
    _print_test_sends(sent, transport.name, args.json)
    return EXIT_FAIL if any(not s.delivery.ok for s in sent) else EXIT_OK


def _synthetic_leads(spec: str | None) -> int:
    spec = spec or "synthetic:1000"
    if not spec.startswith("synthetic:") or not spec.split(":", 1)[1].isdigit():
        raise CliError(f"--leads {spec!r}: expected synthetic:N")
    return int(spec.split(":", 1)[1])


def cmd_simulate(args: argparse.Namespace) -> int:
    # deferred: the simulator imports the whole engine (--help)
    from nurture.devtools.simulate import simulate
    from nurture.views.html_kit import write
    from nurture.views.simulation_html import report_html

    app = build_app()
    campaigns = Path(args.campaigns) if args.campaigns else app.settings.campaigns_dir
    leads = None
    if not args.from_db:
        leads = _synthetic_leads(args.leads)
    else:
        app.require_schema()
    result = simulate(campaigns, app.settings.templates_dir, args.days, synthetic=leads,
                      from_db=app.settings.database_url if args.from_db else None,
                      baseline_dir=Path(args.baseline) if args.baseline else None,
                      seed=args.seed, start=parse_as_of(args.start))
    if args.out:
        write(Path(args.out), report_html(result))
    if args.json:
        print_json(result)
    else:
        for label, tot in result["totals"].items():
            print(f"{label}: {tot['sent']} sent, {tot['mqls']} MQLs, {tot['sla_expired']} "
                  f"SLA expiries, {tot['recycled']} recycled; funnel {tot['funnel']}")
        print(f"{result['days']} days simulated in {result['seconds']} s"
              + (f"; report: {args.out}" if args.out else "") + ".")
    return EXIT_OK


def _add_validate(sub) -> None:
    v = sub.add_parser("validate", help="check campaigns and templates; exit 1 on problems",
                       description="Validate lifecycle.yaml, every campaign file and every "
                                   "template (rendered for a sample lead). Problems print as "
                                   "path:line: key.path: message.")
    v.add_argument("dir", nargs="?", help="campaigns directory (default NURTURE_CAMPAIGNS_DIR)")
    v.add_argument("--templates", help="templates directory (default NURTURE_TEMPLATES_DIR)")
    v.add_argument("--format", choices=["text", "github", "json"], default="text",
                   help="text (default); github: ::error annotations for pull-request "
                        "checks; json: one object with every problem")
    v.set_defaults(func=cmd_validate)


def _add_preview(sub) -> None:
    pv = sub.add_parser("preview", help="write an HTML gallery of every email, per persona",
                        description="Render every campaign × track × step × variant for the "
                                    "built-in personas (and --lead leads from the store), check "
                                    "each (size, alt text, https, unsubscribe, postal address, "
                                    "subject length) and write a static gallery to --out.")
    pv.add_argument("campaigns", nargs="*", metavar="CAMPAIGN", help="only these campaigns")
    pv.add_argument("--lead", action="append", metavar="EMAIL",
                    help="also render for this real lead from the store (repeatable)")
    pv.add_argument("--personas", action="store_true",
                    help="include the built-in personas (the default without --lead)")
    pv.add_argument("--out", default="preview", help="output directory (default preview/)")
    pv.add_argument("--json", action="store_true", help="print the figures as JSON")
    pv.set_defaults(func=cmd_preview)


def _add_test_send(sub) -> None:
    ts = sub.add_parser("test-send", help="send a step to your own inbox, marked [TEST]",
                        description="Render a campaign's step(s) and send them through the "
                                    "configured transport with a [TEST] subject prefix, only "
                                    "to addresses listed under test_recipients in "
                                    "lifecycle.yaml. Never recorded in the ledger.")
    ts.add_argument("campaign")
    ts.add_argument("--step", help="step id (default: every step)")
    ts.add_argument("--variant", help="A/B variant id (default: every variant)")
    ts.add_argument("--to", action="append", required=True, metavar="ADDRESS",
                    help="recipient, repeatable; must be allowed by test_recipients")
    who = ts.add_mutually_exclusive_group()
    who.add_argument("--as-lead", metavar="EMAIL", help="render with this lead's data")
    who.add_argument("--persona", metavar="NAME",
                     help="render for a built-in persona (default grade-b-research)")
    ts.add_argument("--json", action="store_true", help="print the outcome as JSON")
    ts.set_defaults(func=cmd_test_send)


def _add_simulate(sub) -> None:
    sm = sub.add_parser("simulate", help="what-if: run the real engine for N days on a copy",
                        description="Run the daily cycle day by day on a scratch copy (the "
                                    "real store is never written) with seeded simulated "
                                    "engagement; report sends, skips, MQLs, SLA expiries, "
                                    "recycles and the funnel, optionally against a baseline "
                                    "config.")
    sm.add_argument("--days", type=int, default=30)
    sm.add_argument("--campaigns", help="config to simulate (default NURTURE_CAMPAIGNS_DIR)")
    sm.add_argument("--baseline", help="a second campaigns dir to compare against")
    src = sm.add_mutually_exclusive_group()
    src.add_argument("--leads", help="synthetic:N (default synthetic:1000)")
    src.add_argument("--from-db", action="store_true",
                     help="start from a read-only copy of the store's leads and history")
    sm.add_argument("--seed", type=int, default=7)
    sm.add_argument("--start", help="first simulated day (ISO; default today 08:00 UTC)")
    sm.add_argument("--out", help="write an HTML report here")
    sm.add_argument("--json", action="store_true", help="print the result as JSON")
    sm.set_defaults(func=cmd_simulate)


def add_commands(sub) -> None:
    """`validate`, `preview`, `test-send` and `simulate` (top level)."""
    _add_validate(sub)
    _add_preview(sub)
    _add_test_send(sub)
    _add_simulate(sub)
