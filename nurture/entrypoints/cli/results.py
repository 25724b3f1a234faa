"""`nurture report steps|ab|sources|attribution|deliverability|html` (added to `report` by
reports.py) and `nurture costs import` (the spend the ROI figures divide by)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nurture.entrypoints.cli.common import (
    EXIT_OK,
    CliError,
    build_app,
    console,
    parse_as_of,
    print_json,
)

REPORTS = {
    "steps": "per campaign × track × step × variant: sent, delivered, unique human opens and "
             "clicks (machine opens, scanner clicks apart), CTOR, unsubscribes, bounces, spam "
             "reports, and MQL/SAL/opportunity/won within --credit-days of the send",
    "ab": "A/B results per multi-variant step: rates, difference with a 95% Newcombe CI, "
          "two-proportion z-test, minimum-sample warning",
    "sources": "leads created in the window by first (or latest) source / UTM / month: "
               "MQL, SAL, SQL, opportunity, won, revenue, cost ratios, ROI, median days",
    "attribution": "MQLs, opportunities and revenue credited to touches (first, last, "
                   "linear, time-decay) and to sources",
    "deliverability": "per campaign: bounce, spam-report and unsubscribe rates over a "
                      "rolling window, and paused campaigns",
}


def _window(args: argparse.Namespace):
    from nurture.core.reporting import Window  # deferred: SQLAlchemy (--help)

    start, end = parse_as_of(args.date_from), parse_as_of(args.date_to)
    if start and end and start >= end:
        raise CliError("--from must be before --to")
    return Window(start, end, args.campaign)


def build_report(app, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from nurture.wiring import results_report  # deferred: SQLAlchemy (--help)

    return results_report(app.engine, name, _window(args), credit_days=args.credit_days,
                 metric=getattr(args, "metric", "click"), by=getattr(args, "by", "source"),
                 touch=getattr(args, "touch", "first"),
                 lookback_days=getattr(args, "lookback_days", 90.0),
                 half_life_days=getattr(args, "half_life", 7.0),
                 days=getattr(args, "days", 7.0))


def flat_tables(rep: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The report as named flat tables (for CSV, artifacts and printing)."""
    name = rep["report"]
    if name == "ab":
        rows = []
        for test in rep["tests"]:
            for v in test["variants"]:
                rows.append({"campaign": test["campaign"], "track": test["track"],
                             "step": test["step"], "metric": test["metric"],
                             "variant": v["variant"], "control": v["control"],
                             "sent": v["sent"], "successes": v["successes"],
                             "rate": v["rate"], "difference": v.get("difference"),
                             "ci_low": (v.get("difference_ci") or [None])[0],
                             "ci_high": (v.get("difference_ci") or [None, None])[1],
                             "p_value": v.get("p_value"), "verdict": test["verdict"]})
        return {"ab": rows}
    if name == "attribution":
        totals = [{"stage": s, **v} for s, v in rep["totals"].items()]
        return {"by_step": rep["by_step"], "by_source": rep["by_source"], "totals": totals}
    return {name: rep["rows"]}


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:,.2f}".rstrip("0").rstrip(".")
    return str(v)


# the columns a terminal table shows (--json / --csv / html have them all)
DISPLAY = {
    "steps": ("campaign", "step", "variant", "sent", "delivered", "opens", "clicks",
              "open_rate", "click_rate", "click_to_open", "machine_opens_only",
              "scanner_clicks_only", "unsubscribes", "bounced", "spam_reports", "mql", "sal",
              "opportunity", "customer"),
    "ab": ("campaign", "step", "variant", "sent", "successes", "rate", "difference",
           "ci_low", "ci_high", "p_value"),
    "sources": ("group", "leads", "mql", "sal", "sql", "opportunity", "won", "mql_rate",
                "revenue", "pipeline", "cost", "cost_per_lead", "cost_per_mql", "roi",
                "median_days_to_mql", "median_days_to_won"),
    "by_step": ("stage", "campaign", "step", "first", "last", "linear", "time_decay",
                "linear_amount", "time_decay_amount"),
    "by_source": ("model", "stage", "source", "conversions", "amount"),
    "totals": ("stage", "conversions", "with_touch", "unattributed", "amount"),
    "deliverability": ("campaign", "status", "sent", "delivered", "bounced", "spam_reports",
                       "unsubscribes", "bounce_rate", "spam_rate", "unsubscribe_rate",
                       "over_limit"),
}


def print_report(rep: dict[str, Any], console) -> None:
    """The report as rich tables with the definitions of its figures."""
    from rich.table import Table  # deferred: rich costs ~30 ms of `nurture --help`

    f = {k: v for k, v in rep["filters"].items() if v is not None}
    console.print(f"[bold]report {rep['report']}[/bold]  "
                  + "  ".join(f"{k}={v}" for k, v in f.items()))
    for title, rows in flat_tables(rep).items():
        if not rows:
            console.print(f"{title}: no rows")
            continue
        table = Table(title=title, show_lines=False)
        cols = [c for c in DISPLAY.get(title, rows[0]) if c in rows[0]]
        for c in cols:
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*[_cell(r.get(c)) for c in cols])
        console.print(table)
    if rep["report"] == "ab":
        for test in rep["tests"]:
            console.print(f"{test['campaign']}/{test['step']}: {test['verdict']}"
                          + (" — MINIMUM SAMPLE NOT REACHED" if test["min_sample_warning"]
                             else ""))
    console.print("[dim]what the figures mean:[/dim]")
    for k, v in rep["definitions"].items():
        console.print(f"[dim]  {k}: {v}[/dim]")


def write_csv(rep: dict[str, Any], out) -> None:
    tables = flat_tables(rep)
    for i, (title, rows) in enumerate(tables.items()):
        if len(tables) > 1:
            out.write(("\n" if i else "") + f"# {title}\n")
        if not rows:
            continue
        w = csv.DictWriter(out, fieldnames=list(rows[0]), extrasaction="ignore",
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def cmd_report(args: argparse.Namespace) -> int:
    app = build_app()
    app.require_schema()
    rep = build_report(app, args.report_command, args)
    if args.json:
        print_json(rep)
    elif args.csv:
        write_csv(rep, sys.stdout)
    else:
        print_report(rep, console())
    return EXIT_OK


def cmd_report_html(args: argparse.Namespace) -> int:
    from nurture.views.html_kit import write  # deferred: the engine (--help)
    from nurture.views.results_html import render_html

    app = build_app()
    app.require_schema()
    reps = {name: build_report(app, name, args) for name in REPORTS}
    reps["cohorts"] = build_report(app, "sources", argparse.Namespace(
        **{**vars(args), "by": "month", "touch": "first"}))
    html = render_html(reps, generated_at=datetime.now(UTC))
    write(Path(args.out), html)  # atomic; creates the directory, like `simulate --out`
    print(f"wrote {args.out} ({len(html) // 1024} KiB)")
    return EXIT_OK


def _common(sp) -> None:
    sp.add_argument("--from", dest="date_from", help="ISO date/datetime (inclusive)")
    sp.add_argument("--to", dest="date_to", help="ISO date/datetime (exclusive)")
    sp.add_argument("--campaign", help="only this campaign")
    sp.add_argument("--credit-days", type=float, default=14.0,
                    help="stage entries within this many days after a send credit it "
                         "(default 14)")


def add_report_commands(repsub) -> None:
    """Add the results reports to the `report` subparsers (nurture/entrypoints/cli/reports.py)."""
    for name, text in REPORTS.items():
        sp = repsub.add_parser(name, help=text.replace("%", "%%"), description=text)
        _common(sp)
        fmt = sp.add_mutually_exclusive_group()
        fmt.add_argument("--json", action="store_true", help="one JSON object")
        fmt.add_argument("--csv", action="store_true", help="CSV table(s)")
        if name == "ab":
            sp.add_argument("--metric", choices=("click", "open", "mql"), default="click")
        if name == "sources":
            sp.add_argument("--by", default="source", choices=(
                "source", "utm_campaign", "utm_source", "utm_medium", "month"),
                help="group by (month = cohort by lead created month)")
            sp.add_argument("--touch", choices=("first", "latest"), default="first",
                            help="the lead's original (first) or current (latest) source")
        if name == "attribution":
            sp.add_argument("--lookback-days", type=float, default=90.0)
            sp.add_argument("--half-life", type=float, default=7.0,
                            help="time-decay half-life in days (default 7)")
        if name == "deliverability":
            sp.add_argument("--days", type=float, default=7.0, help="rolling window (7)")
        sp.set_defaults(func=cmd_report)
    h = repsub.add_parser("html", help="every results report in one self-contained HTML page",
                          description="Steps, A/B, sources, cohorts, attribution and "
                                      "deliverability with inline SVG charts; no network.")
    _common(h)
    h.add_argument("--out", required=True, help="HTML file to write")
    h.set_defaults(func=cmd_report_html)


# -- costs ----------------------------------------------------------------------------------
COST_COLUMNS = ("source", "utm_campaign", "period_start", "period_end", "amount")


def parse_costs(text: str) -> list[dict[str, Any]]:
    """Rows of a costs CSV (source, utm_campaign, period_start, period_end, amount
    [, currency]); raises ValueError naming the line for anything it cannot read."""
    from nurture.services.ingest import parse_time  # deferred: SQLAlchemy (--help)

    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COST_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"costs CSV lacks column(s) {', '.join(missing)}")
    rows = []
    for i, r in enumerate(reader, start=2):
        try:
            start = parse_time(r["period_start"])
            end = parse_time(r["period_end"])
            if len(r["period_end"].strip()) == 10:
                end = end + timedelta(days=1)  # a date means the whole day
            amount = float(r["amount"])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"line {i}: {exc}") from None
        if not (amount >= 0) or amount == float("inf"):
            raise ValueError(f"line {i}: amount must be a number >= 0")
        if end <= start:
            raise ValueError(f"line {i}: period_end must be after period_start")
        if not (r["source"] or "").strip() and not (r["utm_campaign"] or "").strip():
            raise ValueError(f"line {i}: give a source or a utm_campaign")
        rows.append({"source": (r["source"] or "").strip(),
                     "utm_campaign": (r["utm_campaign"] or "").strip(),
                     "period_start": start, "period_end": end, "amount": amount,
                     "currency": (r.get("currency") or "USD").strip().upper()[:3]})
    return rows


def cmd_costs_import(args: argparse.Namespace) -> int:
    # deferred: the store imports SQLAlchemy (`nurture --help` stays fast)
    from nurture.store import tables as t
    from nurture.store.db import write_tx
    from nurture.store.rows import upsert

    app = build_app()
    app.require_schema()
    try:
        with open(args.file, encoding="utf-8") as fh:
            rows = parse_costs(fh.read())
    except (OSError, ValueError) as exc:
        raise CliError(f"{args.file}: {exc}") from None
    now = datetime.now(UTC)
    stmt = upsert(app.engine, t.source_costs)
    stmt = stmt.on_conflict_do_update(
        index_elements=["source", "utm_campaign", "period_start", "period_end"],
        set_={"amount": stmt.excluded.amount, "currency": stmt.excluded.currency,
              "imported_at": stmt.excluded.imported_at})
    if rows:
        with write_tx(app.engine) as conn:  # all or nothing
            conn.execute(stmt, [{**r, "imported_at": now} for r in rows])
    print(json.dumps({"imported": len(rows)}) if args.json else
          f"{len(rows)} cost rows imported (re-importing a period replaces its amount).")
    return EXIT_OK


def add_commands(sub) -> None:
    """`costs import` (top level)."""
    co = sub.add_parser("costs", help="marketing costs per source / UTM campaign and period")
    cosub = co.add_subparsers(dest="costs_command", metavar="ACTION", required=True)
    ci = cosub.add_parser("import", help="import a costs CSV: source, utm_campaign, "
                          "period_start, period_end, amount[, currency]")
    ci.add_argument("file")
    ci.add_argument("--json", action="store_true")
    ci.set_defaults(func=cmd_costs_import)
