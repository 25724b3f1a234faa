"""The `nurture` command line. Every command has `--help`; failures are one clear sentence."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL = 0, 1


class CliError(Exception):
    """An expected failure: printed as one sentence, exit status 1."""


def _quiet_prefect(verbose: bool = False) -> None:
    """Keep a newcomer's terminal free of Prefect's start-up chatter and telemetry noise.

    Only defaults: anything the user set in the environment wins."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _app(args: argparse.Namespace | None = None, **overrides: Any):
    from pydantic import ValidationError

    from nurture.settings import Settings
    from nurture.wiring import App

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: "
                             f"{e['msg']}" for e in exc.errors())
        raise CliError(f"invalid settings: {problems}") from None
    return App(settings)


def _parse_as_of(value: str | None, option: str = "--as-of",
                 latest: datetime | None = None) -> datetime | None:
    """An ISO time option; out-of-range values (year 1 or 9999 with an offset, anything
    after 2199 or before 1970) are one clear sentence, never an overflow traceback."""
    if value is None:
        return None
    from nurture.services.ingest import parse_time
    from nurture.store.limits import LATEST_SIMULATED, time_problem

    try:
        at = parse_time(value)
    except ValueError as exc:
        if "range of dates" in str(exc):
            raise CliError(f"{option} {value!r} is outside the range of dates nurture can "
                           "work with (1970-01-01 to 2199-12-31)") from None
        raise CliError(f"{option} {value!r} is not an ISO 8601 date or datetime "
                       "(e.g. 2026-11-23T08:00:00Z)") from None
    problem = time_problem(at, option, latest=latest or LATEST_SIMULATED)
    if problem:
        raise CliError(f"{problem}; nurture works with dates from 1970-01-01"
                       + (" to 2199-12-31" if latest is None else "")) from None
    return at


def _in_range(value: float | None, option: str, lo: float, hi: float) -> None:
    """A number option outside what it can mean is one clear sentence (never a traceback
    from deep inside a flow, a socket or an overflow)."""
    if value is None:
        return
    if not (lo <= value <= hi):  # also false for NaN
        raise CliError(f"{option} {value} is out of range: use {lo:g} to {hi:g}")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str, sort_keys=False))


# -- commands ------------------------------------------------------------------------------
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from nurture.store.db import current_revision, upgrade

    app = _app()
    upgrade(app.engine)
    _console().print(f"Database {app.settings.database_url} is at revision "
                     f"{current_revision(app.engine)} (up to date).")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from nurture.services.validation import validate

    app = _app()
    campaigns = Path(args.dir) if args.dir else app.settings.campaigns_dir
    templates = Path(args.templates) if args.templates else app.settings.templates_dir
    config, problems = validate(campaigns, templates)
    fmt = getattr(args, "format", "text")
    if fmt != "text":
        from nurture.services.lint import format_problems

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


def cmd_preview(args: argparse.Namespace) -> int:
    from nurture.core.config import load_config
    from nurture.core.rendering import Renderer
    from nurture.views.preview import build_preview

    app = _app()
    config = load_config(app.settings.campaigns_dir)
    unknown = [c for c in args.campaigns if config.campaign(c) is None]
    if unknown:
        raise CliError(f"unknown campaign(s): {', '.join(unknown)}; the config has "
                       f"{', '.join(c.name for c in config.campaigns)}")
    real = []
    if args.lead:
        from nurture.core.domain import normalise_email

        app.require_schema()
        for email in args.lead:
            detail = app.store.lead_detail(normalise_email(email))
            if detail is None:
                raise CliError(f"no lead with email {email!r} in the store")
            real.append(detail["fields"])
    personas = args.personas or not args.lead
    out = build_preview(config, Renderer(app.settings.templates_dir), Path(args.out),
                        app.settings.public_url, args.campaigns or None, real, personas)
    if args.json:
        _print_json(out)
    else:
        print(f"{out['emails']} email(s) × {out['leads']} persona(s)/lead(s) = "
              f"{out['renderings']} renderings, {out['warnings']} warning(s), "
              f"{out['render_errors']} render error(s) in {out['seconds']} s.")
        print(f"Open {out['index']} in a browser.")
    return EXIT_OK


def cmd_test_send(args: argparse.Namespace) -> int:
    from nurture.core.config import load_config
    from nurture.core.personas import persona
    from nurture.core.rendering import Renderer
    from nurture.services.testsend import TestSendRefused, build_test_messages, send
    from nurture.wiring import build_transport

    app = _app()
    config = load_config(app.settings.campaigns_dir)
    if args.as_lead:
        from nurture.core.domain import normalise_email

        app.require_schema()
        detail = app.store.lead_detail(normalise_email(args.as_lead))
        if detail is None:
            raise CliError(f"no lead with email {args.as_lead!r} in the store")
        lead = detail["fields"]
    else:
        try:
            lead = persona(args.persona or "grade-b-research").lead
        except KeyError as exc:
            raise CliError(str(exc.args[0])) from None
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
    failed = [s for s in sent if not s.delivery.ok]
    if args.json:
        _print_json([{"to": s.to, "step": s.step, "variant": s.variant, "subject": s.subject,
                      "ok": s.delivery.ok, "message_id": s.delivery.message_id,
                      "error": s.delivery.error} for s in sent])
    else:
        for s in sent:
            state = "sent" if s.delivery.ok else f"FAILED: {s.delivery.error}"
            print(f"{s.to}: {s.subject} ({s.step}{'/' + s.variant if s.variant else ''}) "
                  f"via {transport.name}: {state}")
        print("Test sends are not recorded in the ledger or counted in reports.")
    return EXIT_FAIL if failed else EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from nurture.services.simulate import report_html, simulate

    app = _app()
    campaigns = Path(args.campaigns) if args.campaigns else app.settings.campaigns_dir
    leads = None
    if not args.from_db:
        spec = args.leads or "synthetic:1000"
        if not spec.startswith("synthetic:") or not spec.split(":", 1)[1].isdigit():
            raise CliError(f"--leads {spec!r}: expected synthetic:N")
        leads = int(spec.split(":", 1)[1])
    else:
        app.require_schema()
    result = simulate(campaigns, app.settings.templates_dir, args.days, synthetic=leads,
                      from_db=app.settings.database_url if args.from_db else None,
                      baseline_dir=Path(args.baseline) if args.baseline else None,
                      seed=args.seed, start=_parse_as_of(args.start))
    if args.out:
        from nurture.views.html_kit import write

        write(Path(args.out), report_html(result))
    if args.json:
        _print_json(result)
    else:
        for label, tot in result["totals"].items():
            print(f"{label}: {tot['sent']} sent, {tot['mqls']} MQLs, {tot['sla_expired']} "
                  f"SLA expiries, {tot['recycled']} recycled; funnel {tot['funnel']}")
        print(f"{result['days']} days simulated in {result['seconds']} s"
              + (f"; report: {args.out}" if args.out else "") + ".")
    return EXIT_OK


def _progress(label: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    if not sys.stderr.isatty():
        return (lambda n: None), (lambda: None)
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn(f"{label}: {{task.completed:,}} rows"),
                   TimeElapsedColumn(), transient=True, console=_console(stderr=True))
    bar.start()
    task = bar.add_task(label, total=None)
    return (lambda n: bar.update(task, completed=n)), bar.stop


def _print_import(report, as_json: bool, what: str) -> None:
    if as_json:
        _print_json(report.as_dict())
        return
    from rich.table import Table

    table = Table(title=f"Imported {what} from {report.file}", title_justify="left")
    table.add_column("rows read", justify="right")
    table.add_column("inserted", justify="right")
    table.add_column("updated" if what == "leads" else "duplicates", justify="right")
    if what == "activities":
        table.add_column("new leads", justify="right")
    table.add_column("quarantined", justify="right")
    cells = [report.read, report.inserted,
             report.updated if what == "leads" else report.duplicates]
    if what == "activities":
        cells.append(report.leads_created)
    cells.append(report.quarantined)
    table.add_row(*[f"{c:,}" for c in cells])
    console = _console()
    console.print(table)
    if report.quarantined:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.reasons.items()))
        console.print(f"[yellow]{report.quarantined} bad row(s) quarantined to "
                      f"{report.quarantine_file}[/yellow] ({reasons}); fix and re-import them.")


def _run_import(args: argparse.Namespace, importer, what: str) -> int:
    """Shared by both importers: progress on a terminal, a table or `--json` after."""
    app = _app()
    app.require_schema()
    tick, stop = _progress(f"importing {what}")
    try:
        report = importer(app.store, Path(args.file),
                          Path(args.quarantine) if args.quarantine else None, tick)
    finally:
        stop()
    _print_import(report, args.json, what)
    return EXIT_OK


def cmd_import_leads(args: argparse.Namespace) -> int:
    from nurture.services.ingest import import_leads_csv

    return _run_import(args, import_leads_csv, "leads")


def cmd_activities_import(args: argparse.Namespace) -> int:
    from nurture.services.ingest import import_activities_jsonl

    return _run_import(args, import_activities_jsonl, "activities")


def run_cycle_flow(as_of: datetime | None, dry_run: bool, chunk_size: int | None
                   ) -> dict[str, Any]:
    """Run the daily flow in-process (Prefect starts a temporary server if none is set)."""
    from nurture.flows.daily_cycle import daily_nurture_cycle

    return daily_nurture_cycle(as_of=as_of.isoformat() if as_of else None, dry_run=dry_run,
                               chunk_size=chunk_size)


def cmd_cycle(args: argparse.Namespace) -> int:
    from nurture.views.summary import print_summary

    as_of = _parse_as_of(args.as_of)
    _in_range(args.chunk_size, "--chunk-size", 1, 200_000)
    app = _app()
    app.require_schema()
    app.config  # noqa: B018 - a bad config fails here with every problem listed
    summary = run_cycle_flow(as_of, args.dry_run, args.chunk_size)
    if args.json:
        _print_json(summary)
    else:
        print_summary(summary, _console())
    return EXIT_OK


def cmd_lead_show(args: argparse.Namespace) -> int:
    from nurture.services.lead_view import LeadNotFound, explain_lead, print_lead

    app = _app()
    app.require_schema()
    try:
        info = explain_lead(app.store, app.rules, args.email, app.settings.default_timezone,
                            _parse_as_of(args.as_of))
    except LeadNotFound as exc:
        raise CliError(str(exc)) from None
    if args.json:
        _print_json(info)
    else:
        print_lead(info, _console())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from nurture.devtools.demo import run_demo

    _in_range(args.leads, "--leads", 1, 1_000_000)
    _in_range(args.days, "--days", 1, 366)
    _in_range(args.seed, "--seed", 0, 2**63 - 1)
    return run_demo(Path(args.dir), leads=args.leads, days=args.days, seed=args.seed,
                    as_json=args.json)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from nurture.entrypoints.http.app import create_app

    _in_range(args.port, "--port", 1, 65535)
    app = _app()
    app.require_schema()
    app.config  # noqa: B018 - the activity API checks types against it
    try:
        asgi = create_app(app)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    _console(stderr=True).print(
        f"nurture app on http://{args.host}:{args.port} — webhook POST /webhooks/sendgrid, "
        "unsubscribe /unsubscribe/{token}, activities POST /activities, GET /health",
        soft_wrap=True)
    uvicorn.run(asgi, host=args.host, port=args.port, log_level=args.log_level,
                proxy_headers=True)
    return EXIT_OK


def cmd_fake_sendgrid(args: argparse.Namespace) -> int:
    import threading

    from nurture.devtools.fake_sendgrid import FakeSendGrid

    _in_range(args.port, "--port", 0, 65535)
    _in_range(args.latency_ms, "--latency-ms", 0, 600_000)
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


def cmd_webhooks_replay(args: argparse.Namespace) -> int:
    from nurture.services.events import retry_provider_events
    from nurture.store.events import MAX_ATTEMPTS, EventStore

    app = _app()
    app.require_schema()
    report = retry_provider_events(app, args.max_attempts)
    left = EventStore(app.engine).failures(args.max_attempts or MAX_ATTEMPTS)
    if args.json:
        _print_json(report | {"still_failing": left})
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


def cmd_sales(args: argparse.Namespace) -> int:
    from nurture.core.sales import FeedbackRefused, record_feedback
    from nurture.store.sales import LeadNotFound, SalesStore

    app = _app()
    app.require_schema()
    from nurture.store.limits import MAX_FUTURE

    # feedback is about what happened: at most a day ahead, as POST /sales/feedback
    at = _parse_as_of(getattr(args, "at", None), "--at",
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
        _print_json(result)
    else:
        extra = (f"; back to nurture on {result['recycle_until'][:10]}"
                 if result["recycle_until"] and result["to"] == "recycled" else "")
        print(f"{result['email']}: {result['from']} → {result['to']} ({result['reason']})"
              f"{extra}.")
    return EXIT_OK


def cmd_handoffs_list(args: argparse.Namespace) -> int:
    import csv

    from nurture.store.sales import SalesStore

    app = _app()
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
    from rich.table import Table

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
    _console().print(table)
    return EXIT_OK


def cmd_handoffs_deliver(args: argparse.Namespace) -> int:
    from nurture.wiring import deliver_handoffs

    app = _app()
    app.require_schema()
    out = deliver_handoffs(app)
    if out is None:
        raise CliError("no CRM webhook is configured: set NURTURE_HANDOFF_WEBHOOK_URL")
    if args.json:
        _print_json(out)
    else:
        print(f"{out['due']} handoff(s) due: {out['delivered']} delivered, "
              f"{out['retrying']} will be retried.")
    return EXIT_OK if out["retrying"] == 0 else EXIT_FAIL


def cmd_touches_list(args: argparse.Namespace) -> int:
    app = _app()
    app.require_schema()
    statuses = args.status or ["in_doubt", "failed"]
    rows = app.store.ledger.with_status(statuses, args.limit)
    if args.json:
        _print_json({"statuses": statuses, "touches": rows})
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"Touches {', '.join(statuses)}: {len(rows)}", title_justify="left")
    for col in ("id", "lead", "campaign / step", "status", "attempts", "slot", "why"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["id"]), r["email"], f"{r['campaign']} / {r['step']}"
                      + (f" (round {r['round']})" if r["round"] else ""), r["status"],
                      str(r["attempts"]), f"{r['send_at']:%Y-%m-%d %H:%M}", r["error"] or "")
    _console().print(table)
    if rows:
        _console().print("Put chosen ones back with `nurture touches release ID ...` "
                         "(they are sent by the next cycle).")
    return EXIT_OK


def cmd_touches_release(args: argparse.Namespace) -> int:
    app = _app()
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
        _print_json({"released": done, "not_released": skipped})
    else:
        print(f"{len(done)} touch(es) released: planned again, sent by the next cycle."
              + (f" Not in doubt or failed (left alone): {', '.join(map(str, skipped))}."
                 if skipped else ""))
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nurture",
        description="Lead-nurture campaign orchestration: campaigns as config, a daily cycle "
                    "that scores, segments, emails and routes leads. Settings come from "
                    "NURTURE_* environment variables or a .env file (see README).")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's run logs")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    db = sub.add_parser("db", help="manage the lead store database")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="create or migrate the database schema (Alembic)")
    up.set_defaults(func=cmd_db_upgrade)

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

    il = sub.add_parser("import-leads", help="upsert leads from a CSV file by email",
                        description="Upsert leads by normalised email. Rows with an invalid "
                                    "email or bad values go to a quarantine CSV with a reason.")
    il.add_argument("file", help="CSV with a header row; `email` is required")
    il.add_argument("--quarantine", help="where bad rows go (default FILE.quarantine.csv)")
    il.add_argument("--json", action="store_true", help="print counts as one JSON object")
    il.set_defaults(func=cmd_import_leads)

    act = sub.add_parser("activities", help="import activities (JSONL)")
    actsub = act.add_subparsers(dest="act_command", metavar="ACTION", required=True)
    ai = actsub.add_parser("import", help="import activities from a JSONL file",
                           description="One JSON object per line: id, email, type, "
                                       "occurred_at, properties. `id` de-duplicates.")
    ai.add_argument("file")
    ai.add_argument("--quarantine", help="where bad lines go (default FILE.quarantine.jsonl)")
    ai.add_argument("--json", action="store_true", help="print counts as one JSON object")
    ai.set_defaults(func=cmd_activities_import)

    c = sub.add_parser("cycle", help="run the daily nurture cycle (a Prefect flow run)",
                       description="Score, segment, route and email every due lead. Safe to "
                                   "re-run: the same day never sends a step twice.")
    c.add_argument("--as-of", help="ISO datetime the cycle runs at (default now)")
    c.add_argument("--dry-run", action="store_true", help="decide and report; write nothing")
    c.add_argument("--chunk-size", type=int, help="leads per Prefect task")
    c.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    c.set_defaults(func=cmd_cycle)

    lead = sub.add_parser("lead", help="inspect leads")
    leadsub = lead.add_subparsers(dest="lead_command", metavar="ACTION", required=True)
    ls = leadsub.add_parser("show", help="stages, scores, touches and transitions of a lead")
    ls.add_argument("email")
    ls.add_argument("--as-of", help="compute scores as of this ISO datetime (default now)")
    ls.add_argument("--json", action="store_true", help="print as one JSON object")
    ls.set_defaults(func=cmd_lead_show)

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

    sv = sub.add_parser("serve", help="run the HTTP app (webhooks, unsubscribe, activity API)",
                        description="SendGrid Event Webhook at POST /webhooks/sendgrid, "
                                    "one-click unsubscribe at /unsubscribe/{token}, the "
                                    "activity API at POST /activities, GET /health.")
    sv.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--log-level", default="info",
                    choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=cmd_serve)

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

    from nurture.entrypoints.cli.reports import add_commands as add_report_commands

    add_report_commands(sub)
    from nurture.entrypoints.cli.results import add_commands as add_results_commands

    add_results_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_prefect(args.verbose)
    from sqlalchemy.exc import OperationalError

    from nurture.core.config import ConfigError
    from nurture.services.cycle import RunIncomplete, SendPhaseStopped
    from nurture.services.ingest import ImportFileError
    from nurture.services.runs import RunFenced
    from nurture.wiring import MissingSecret, NotMigrated

    try:
        return args.func(args)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        print(f"error: the campaign config has {len(exc.problems)} problem(s); "
              "fix them and run again (nothing was changed).", file=sys.stderr)
    except (CliError, NotMigrated, ImportFileError, MissingSecret, SendPhaseStopped,
            RunIncomplete, RunFenced) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OperationalError as exc:
        print(f"error: database error: {str(exc.orig).strip().splitlines()[0]}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; nothing is lost — run the same command again to continue.",
              file=sys.stderr)
    return EXIT_FAIL
