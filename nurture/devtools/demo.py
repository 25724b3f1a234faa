"""`nurture demo`: a fresh demo database, synthetic leads with activity histories, and
several simulated days of the real daily flow — the quickest way to see the product work.

The CLI hands in how to build the app container and how to run one daily cycle
(`run_demo(..., make_app=..., run_cycle=...)`), so this module needs nothing from the
command line's internals."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy import func, select

from nurture.core.sales import FeedbackRefused
from nurture.devtools.demo_data import (
    generate_activities,
    generate_leads,
    write_activities_jsonl,
    write_leads_csv,
)
from nurture.services.feedback import record_feedback
from nurture.services.ingest import import_activities_jsonl, import_leads_csv
from nurture.store import tables as t
from nurture.store.db import upgrade
from nurture.store.sales import SalesStore

if TYPE_CHECKING:
    from nurture.wiring import App

MARKER = ".nurture-demo"

# one daily cycle: (as_of, dry_run, chunk_size) -> the run's summary
RunCycle = Callable[[datetime | None, bool, int | None], dict[str, Any]]


class DemoError(Exception):
    """The demo cannot start (e.g. no campaigns directory): one sentence for the user."""


def _reset_dir(directory: Path) -> None:
    if directory.exists():
        if not (directory / MARKER).exists() and any(directory.iterdir()):
            raise SystemExit(f"error: {directory} exists and is not a nurture demo directory; "
                             "choose another --dir")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("created by `nurture demo`; safe to delete\n")


def _fresh_app(directory: Path, make_app: Callable[[], App]) -> App:
    """The app on a new SQLite database and outbox inside `directory`, migrated."""
    _reset_dir(directory)
    os.environ["NURTURE_DATABASE_URL"] = f"sqlite:///{directory / 'nurture.db'}"
    os.environ["NURTURE_OUTBOX_DIR"] = str(directory / "outbox")
    app = make_app()
    if not app.settings.campaigns_dir.is_dir():
        raise DemoError(f"campaigns directory {app.settings.campaigns_dir} not found; run the "
                        "demo from the repository root or set NURTURE_CAMPAIGNS_DIR")
    app.config  # noqa: B018 - validate before building anything
    upgrade(app.engine)
    return app


def _seed_store(app: App, directory: Path, console: Console, leads: int, days: int,
                seed: int, start: datetime) -> None:
    """Synthetic leads and activity histories, written as files and imported."""
    with console.status("Generating synthetic leads and activity histories…"):
        lead_rows = list(generate_leads(leads, seed=seed, start=start))
        write_leads_csv(directory / "leads.csv", lead_rows)
        n_acts = write_activities_jsonl(directory / "activities.jsonl",
                                        generate_activities(lead_rows, start, days, seed=seed))
        lead_report = import_leads_csv(app.store, directory / "leads.csv")
        act_report = import_activities_jsonl(app.store, directory / "activities.jsonl")
    console.print(f"Imported [bold]{lead_report.inserted:,}[/bold] leads and "
                  f"[bold]{act_report.inserted:,}[/bold] activities "
                  f"(of {n_acts:,} generated, spanning 45 days before the start to day {days}).")


def _simulate_days(app: App, run_cycle: RunCycle, console: Console, days: int, seed: int,
                   start: datetime, as_json: bool) -> tuple[Counter, list[dict[str, Any]]]:
    """One real daily cycle per day, then simulated engagement and sales feedback."""
    totals: Counter = Counter()
    watermark = 0
    daily: list[dict[str, Any]] = []
    show_bar = sys.stderr.isatty() and not as_json
    bar = Progress(TextColumn("[bold]Simulating daily cycles"), BarColumn(),
                   MofNCompleteColumn(), TextColumn("{task.description}"),
                   console=Console(stderr=True), transient=True, disable=not show_bar)
    with bar:
        task = bar.add_task("", total=days)
        for day in range(days):
            as_of = start + timedelta(days=day)
            summary = run_cycle(as_of, False, None)
            watermark = simulate_engagement(app, watermark, seed)
            sales = simulate_sales(app, min(as_of + timedelta(hours=3), datetime.now(UTC)),
                                   seed)
            for key in ("touches_sent", "mqls", "recycled"):
                totals[key] += summary[key]
            for key, n in sales.items():
                totals[f"sales_{key}"] += n
            daily.append({"as_of": summary["as_of"], "sent": summary["touches_sent"],
                          "mqls": summary["mqls"], "recycled": summary["recycled"],
                          "sales_feedback": sales})
            bar.update(task, advance=1, description=f"{as_of:%a %d %b}: "
                       f"{summary['touches_sent']} sent, {summary['mqls']} MQLs, "
                       f"{summary['recycled']} recycled")
            if not show_bar and not as_json:
                console.print(f"  {as_of:%a %d %b}: {summary['touches_sent']:>4} sent, "
                              f"{summary['mqls']:>2} MQLs, {summary['recycled']:>2} recycled"
                              f" | sales: {sales['accept']:>2} accepted, {sales['reject']:>2}"
                              f" rejected, {sales['won']} won", soft_wrap=True)
    return totals, daily


def run_demo(directory: Path, make_app: Callable[[], App], run_cycle: RunCycle,
             leads: int = 2000, days: int = 14, seed: int = 7,
             as_json: bool = False) -> dict[str, Any]:
    """Build the demo in `directory` (recreated) and return its outcome; progress goes to
    the terminal (stderr when `as_json`), the outcome is the caller's to print.

    `make_app` builds the app container from the environment (set here to the demo's
    database and outbox); `run_cycle` runs one daily cycle."""
    console = Console(stderr=as_json, highlight=False)
    directory = directory.resolve()
    app = _fresh_app(directory, make_app)
    # the simulation ends with today's cycle, so `nurture lead show` (as of now) lines up
    today = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    _seed_store(app, directory, console, leads, days, seed, start)
    totals, daily = _simulate_days(app, run_cycle, console, days, seed, start, as_json)
    return _outcome(app, directory, days, totals, daily)


# demo engagement per sent email (seeded per touch); variant "b" of a step gets a better
# click rate so the A/B report has something to find
DEMO_RATES = {"bounce": 0.015, "machine_open": 0.25, "open": 0.38, "click": 0.22,
              "click_b": 0.34, "scanner": 0.03, "unsubscribe": 0.006, "spamreport": 0.0008}


def _engagement_events(rows, seed: int) -> list[dict[str, Any]]:
    """Seeded SendGrid events for sent touches (id, email, campaign, step, variant,
    send_at)."""
    events: list[dict[str, Any]] = []
    for tid, email, campaign, step, variant, send_at in rows:
        r = random.Random(f"{seed}-engage-{tid}").random
        base = {"email": email, "touch_id": str(tid), "campaign": campaign, "step": step,
                "sg_message_id": f"demo{tid}.filter"}
        ts = int(send_at.timestamp())

        def ev(kind: str, dt: int, base=base, ts=ts, tid=tid, **kw: Any) -> None:
            events.append({**base, "event": kind, "timestamp": ts + dt,
                           "sg_event_id": f"demo-{tid}-{kind}-{dt}", **kw})

        if r() < DEMO_RATES["bounce"]:
            ev("bounce", 5, type="bounce", reason="550 5.1.1 mailbox unavailable")
            continue
        ev("delivered", 3)
        if r() < DEMO_RATES["machine_open"]:
            ev("open", 6, sg_machine_open=True)
        if r() < DEMO_RATES["scanner"]:
            ev("click", 4, url="https://acme.example/")
        if r() < DEMO_RATES["open"]:
            ev("open", 3600, sg_machine_open=False)
            if r() < DEMO_RATES["click_b" if variant == "b" else "click"]:
                ev("click", 3700, url="https://acme.example/")
            if r() < DEMO_RATES["unsubscribe"]:
                ev("unsubscribe", 3800)
            elif r() < DEMO_RATES["spamreport"] * 5:
                ev("spamreport", 3900)
    return events


def simulate_engagement(app: App, after_id: int, seed: int) -> int:
    """What recipients did with the emails sent since touch `after_id`, as SendGrid Event
    Webhook events (delivered/bounce, machine and human opens, scanner and human clicks,
    unsubscribes, spam reports) applied through the real webhook path. Returns the new
    watermark (highest touch id seen)."""
    T, L = t.touches, t.leads
    with app.engine.connect() as conn:
        rows = conn.execute(select(T.c.id, L.c.email, T.c.campaign, T.c.step, T.c.variant,
                                   T.c.send_at)
                            .join(L, L.c.id == T.c.lead_id)
                            .where(T.c.id > after_id, T.c.status == "sent")
                            .order_by(T.c.id)).all()
    if not rows:
        return after_id
    events = _engagement_events(rows, seed)
    store = app.webhook_events
    for i in range(0, len(events), 2000):
        part = events[i:i + 2000]
        batch = store.store_batch(json.dumps(part), True, len(part))
        store.apply_batch(batch, part, app.settings.scanner_click_seconds)
    return rows[-1].id


def simulate_sales(app: App, at: datetime, seed: int) -> Counter:
    """Sales answering handoffs, through the same service as `nurture sales`: per handoff
    (seeded) ~55 % accepted the day it arrives, ~20 % rejected with a reason code, ~25 %
    left unanswered (the SLA expires and the lead comes back recycled); accepted leads
    sometimes become opportunities after a few days, and some of those are won or lost."""
    store = SalesStore(app.engine)
    done: Counter = Counter()
    codes = sorted(app.rules.sales_rejected)

    def act(email: str, action: str, reason: str | None = None, note: str | None = None,
            amount: float | None = None):
        try:
            record_feedback(store, app.rules, email, action, at, reason=reason, note=note,
                            actor="demo:sales-rep", amount=amount)
            done[action] += 1
        except (FeedbackRefused, LookupError):
            pass

    for h in store.handoffs("pending"):
        if h["created_at"] > at:
            continue
        answer = _handoff_answer(seed, h["id"], codes)
        if answer is not None:
            action, reason, note = answer
            act(h["email"], action, reason, note=note)
    L = t.leads
    with app.engine.connect() as conn:
        rows = conn.execute(select(L.c.id, L.c.email, L.c.lifecycle_stage,
                                   L.c.stage_entered_at)
                            .where(L.c.lifecycle_stage.in_(("sal", "opportunity")))).all()
    for lead_id, email, stage, since in rows:
        step = _deal_step(seed, lead_id, stage, at - since)
        if step is not None:
            action, details = step
            act(email, action, **details)
    return done


_REJECT_WEIGHTS = {"not_ready": 40, "bad_timing": 25, "no_budget": 15, "bad_data": 10,
                   "competitor": 10}


def _handoff_answer(seed: int, handoff_id: int, codes: list[str]
                    ) -> tuple[str, str | None, str] | None:
    """Sales' seeded answer to one pending handoff as (action, reason code, note), or None
    when it is left unanswered."""
    r = random.Random(f"{seed}-handoff-{handoff_id}").random()
    if r < 0.55:
        return "accept", None, "call booked"
    if r < 0.75 and codes:
        code = random.Random(f"{seed}-reason-{handoff_id}").choices(
            codes, [_REJECT_WEIGHTS.get(c, 10) for c in codes])[0]
        return "reject", code, "not a fit right now"
    return None


def _deal_step(seed: int, lead_id: int, stage: str, in_stage: timedelta
               ) -> tuple[str, dict[str, Any]] | None:
    """The seeded next deal step for a lead `in_stage` long in `sal` or `opportunity`, as
    (action, its details), or None for no change yet."""
    r = random.Random(f"{seed}-deal-{lead_id}-{stage}").random()
    deal = round(random.Random(f"{seed}-amount-{lead_id}").lognormvariate(9.8, 0.6), -2)
    if stage == "sal" and in_stage >= timedelta(days=3) and r < 0.4:
        return "opportunity", {"amount": deal}
    if stage == "opportunity" and in_stage >= timedelta(days=5):
        if r < 0.5:
            return "won", {"amount": deal}
        if r < 0.8:
            return "lost", {"note": "went quiet"}
    return None


def _examples(app) -> dict[str, str | None]:
    """One lead of each interesting kind, to suggest `nurture lead show` on."""
    out: dict[str, str | None] = {}
    with app.engine.connect() as conn:
        def first(stmt):
            return conn.execute(stmt.limit(1)).scalar()

        L, T = t.leads, t.touches
        out["mql"] = first(select(L.c.email).where(L.c.lifecycle_stage == "mql")
                           .order_by(L.c.score.desc()))
        out["recycled"] = first(select(L.c.email).where(L.c.lifecycle_stage == "recycled"))
        out["switched_to_evaluation"] = first(
            select(L.c.email).join(T, T.c.lead_id == L.c.id)
            .where(L.c.buying_stage == "evaluation", L.c.lifecycle_stage == "nurturing")
            .group_by(L.c.email).having(func.count(func.distinct(T.c.track)) > 1))
        out["research"] = first(
            select(L.c.email).join(T, T.c.lead_id == L.c.id)
            .where(L.c.buying_stage == "research", L.c.lifecycle_stage == "nurturing")
            .group_by(L.c.email).order_by(func.count().desc()))
    return out


def _outcome(app, directory: Path, days: int, totals: Counter, daily: list) -> dict[str, Any]:
    with app.engine.connect() as conn:
        buying = dict(conn.execute(select(t.leads.c.buying_stage, func.count())
                                   .group_by(t.leads.c.buying_stage)).all())
        steps = conn.execute(select(t.touches.c.campaign, t.touches.c.track, t.touches.c.step,
                                    func.count()).where(t.touches.c.status == "sent")
                             .group_by(t.touches.c.campaign, t.touches.c.track,
                                       t.touches.c.step)
                             .order_by(t.touches.c.campaign, t.touches.c.track,
                                       t.touches.c.step)).all()
        owners = dict(conn.execute(select(t.handoffs.c.owner, func.count())
                                   .group_by(t.handoffs.c.owner)).all())
    return {
        "directory": str(directory),
        "database_url": app.settings.database_url,
        "outbox": str(directory / "outbox" / "index.html"),
        "days": days,
        "touches_sent": totals["touches_sent"],
        "mqls": totals["mqls"],
        "recycled": totals["recycled"],
        "sales_feedback": {k[6:]: v for k, v in sorted(totals.items())
                           if k.startswith("sales_")},
        "lifecycle_stages": app.store.stage_counts(),
        "buying_stages": {str(k): v for k, v in buying.items()},
        "sent_by_step": [{"campaign": c, "track": tr, "step": s, "sent": n}
                         for c, tr, s, n in steps],
        "handoffs_by_owner": owners,
        "examples": _examples(app),
        "daily": daily,
    }
