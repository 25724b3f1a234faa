"""Rich tables for the terminal: the funnel, one lead, a cycle summary and the demo's
outcome. The engine builds plain dicts (nurture.core.funnel, nurture.services.lead_view,
nurture.views.summary, nurture.devtools.demo); only the CLI draws them, so core and
services need no terminal library.

Command modules import this module inside their command functions: rich costs ~30 ms to
import, which `nurture --help` should not pay."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nurture.core.funnel import FUNNEL_STAGES
from nurture.views.funnel import format_days, format_pct, headline, report_time
from nurture.views.summary import summary_table_rows


# -- nurture report funnel ----------------------------------------------------------------
def _stage_table(report: dict[str, Any]) -> Table:
    conv = {c["from"]: c for c in report["conversion"]}
    st = Table(title="Stages", title_justify="left")
    st.add_column("stage")
    st.add_column("leads now", justify="right")
    st.add_column("ever reached", justify="right")
    st.add_column("median days", justify="right")
    st.add_column("→ next stage")
    st.add_column("converted", justify="right")
    st.add_column("rate", justify="right")
    for s, n in report["leads_by_stage"].items():
        c = conv.get(s)
        nxt = [c["to"], f"{c['reached_to']:,}", format_pct(c["rate"])] if c else ["", "", ""]
        st.add_row(s, f"{n:,}", f"{report['reached'].get(s, 0):,}",
                   format_days(report["median_days_in_stage"].get(s)), *nxt,
                   end_section=s == FUNNEL_STAGES[-1])
    return st


def _mql_table(m: dict[str, Any]) -> Table:
    mt = Table(title="MQL handoffs", title_justify="left")
    mt.add_column("handoffs")
    mt.add_column("count", justify="right")
    for label, key in (("handed off", "handed_off"), ("accepted", "accepted"),
                       ("rejected", "rejected"), ("expired", "expired"),
                       ("pending", "pending"), ("  of them overdue", "overdue")):
        mt.add_row(label, f"{m[key]:,}")
    mt.add_row("acceptance rate", format_pct(m["acceptance_rate"]), end_section=True)
    mt.add_row("SLA compliance", format_pct(m["sla_compliance"]))
    mt.add_row("SLA response rate", format_pct(m["sla_response_rate"]))
    return mt


def _counts(title: str, label: str, data: dict[str, int]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column(label)
    t.add_column("count", justify="right")
    for k, v in data.items():
        t.add_row(escape(str(k)), f"{v:,}")
    if not data:
        t.add_row("[dim]none[/dim]", "")
    return t


def print_funnel(report: dict[str, Any], console: Console | None = None) -> None:
    """The report as rich tables, readable in a 100-column terminal."""
    console = console or Console()
    console.print(f"[bold]Lead funnel as of {report_time(report)}[/bold]")
    console.print(headline(report))
    console.print(_stage_table(report))
    console.print(Columns([
        _mql_table(report["mql"]),
        _counts("Sales rejects", "reason", report["rejects_by_reason"]),
        _counts("MQLs by source", "source", report["mqls_by_source"]),
        _counts("Recycled", "reason", report["recycled"]["by_reason"])]))
    console.print("[dim]SLA compliance: accepted in time / handoffs resolved or past the "
                  "deadline; the response rate counts timely rejects too.[/dim]")


# -- nurture lead show (lead data and rule text may contain [brackets]: escape them) -------
def _lead_grid(info: dict[str, Any]) -> Table:
    e = escape
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("lifecycle stage", info["lifecycle_stage"] +
                 (f" (recycled {info['recycle_count']}×)" if info["recycle_count"] else ""))
    grid.add_row("buying stage", info["buying_stage"])
    grid.add_row("score", f"{info['score']:g} = fit {info['fit_score']:g} + engagement "
                 f"{info['engagement_score']:g}  (grade {info['grade']})")
    grid.add_row("campaign / track", e(f"{info['campaign'] or '-'} / {info['track'] or '-'}"))
    if info["suppressed"]:
        grid.add_row("suppressed", f"[red]{e(str(info['suppressed']))}[/red] — never emailed")
    if info["recycle_until"]:
        grid.add_row("recycle wait until", info["recycle_until"][:16].replace("T", " "))
    return grid


def _score_table(info: dict[str, Any]) -> Table | None:
    fit = info["score_breakdown"]["fit"]
    eng = info["score_breakdown"]["engagement"]
    if not (fit or eng):
        return None
    t = Table(title="Score breakdown", title_justify="left")
    t.add_column("part")
    t.add_column("rule / activity")
    t.add_column("points", justify="right")
    for f in fit:
        t.add_row("fit", escape(f["rule"]), f"{f['points']:+g}")
    for k, v in eng.items():
        t.add_row("engagement", f"{k} (decayed)", f"{v:+.1f}")
    return t


def _touch_table(touches: list[dict[str, Any]]) -> Table:
    e = escape
    t = Table(title="Touches (in order)", title_justify="left")
    for col in ("#", "campaign", "track", "step", "variant", "status", "sent at", "subject"):
        t.add_column(col)
    for i, tc in enumerate(touches, 1):
        when = (tc["sent_at"] or tc["send_at"] or "")[:16].replace("T", " ")
        t.add_row(str(i), e(tc["campaign"]), e(tc["track"]), e(tc["step"]),
                  e(tc["variant"] or ""), tc["status"], when,
                  e(tc["subject"] or tc["error"] or ""))
    return t


def _transition_table(transitions: list[dict[str, Any]]) -> Table:
    t = Table(title="Transitions (why this lead is here)", title_justify="left")
    for col in ("at", "from → to", "reason", "actor"):
        t.add_column(col)
    for tr in transitions:
        t.add_row(tr["at"][:16].replace("T", " "), f"{tr['from']} → {tr['to']}",
                  escape(tr["reason"] + (f" — {tr['note']}" if tr["note"] else "")),
                  escape(tr["actor"]))
    return t


def print_lead(info: dict[str, Any], console: Console | None = None) -> None:
    """`nurture lead show`: the lead, its score, touches, transitions and handoffs."""
    e = escape
    console = console or Console()
    name = e(f"{info['name']} <{info['email']}>" if info["name"] else info["email"])
    console.print(f"[bold]{name}[/bold]" + (f" — {e(info['company'])}" if info["company"] else ""))
    console.print(_lead_grid(info))
    scores = _score_table(info)
    if scores is not None:
        console.print(scores)
    if info["touches"]:
        console.print(_touch_table(info["touches"]))
    else:
        console.print("[dim]No touches yet.[/dim]")
    if info["transitions"]:
        console.print(_transition_table(info["transitions"]))
    for h in info["handoffs"]:
        console.print(f"Handoff to [bold]{e(h['owner'])}[/bold]: {h['status']}, SLA due "
                      f"{h['sla_due_at'][:16].replace('T', ' ')}"
                      + (f" ({h['outcome_reason']})" if h["outcome_reason"] else ""))


# -- nurture cycle ------------------------------------------------------------------------
def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """A cycle summary as one readable table on the terminal."""
    console = console or Console()
    title = f"Nurture cycle as of {summary['as_of'][:16].replace('T', ' ')} UTC"
    if summary["dry_run"]:
        title += " (dry run: nothing written or sent)"
    table = Table(title=title, title_justify="left")
    for col, just in (("campaign", "left"), ("scored", "right"), ("by buying stage", "left"),
                      ("due", "right"), ("sent", "right"), ("failed", "right"),
                      ("skipped", "left"), ("MQLs", "right"), ("recycled", "right")):
        table.add_column(col, justify=just)
    rows = summary_table_rows(summary)
    for i, r in enumerate(rows):
        table.add_row(*[escape(str(v)) for v in r.values()], end_section=i == len(rows) - 2,
                      style="bold" if r["campaign"] == "TOTAL" else None)
    console.print(table)


# -- nurture demo -------------------------------------------------------------------------
def print_demo_outcome(console: Console, o: dict[str, Any]) -> None:
    """What the demo did, and which commands show more."""
    fb = o["sales_feedback"]
    console.print(f"\n[bold green]Simulated {o['days']} days[/bold green]: "
                  f"{o['touches_sent']:,} emails sent, {o['mqls']:,} MQLs handed to sales, "
                  f"{o['recycled']:,} leads recycled. Simulated sales reps accepted "
                  f"{fb.get('accept', 0)}, rejected {fb.get('reject', 0)} (with reason codes), "
                  f"opened {fb.get('opportunity', 0)} opportunities, won {fb.get('won', 0)} "
                  f"and lost {fb.get('lost', 0)}; unanswered MQLs expired after the SLA.\n")
    stages = Table(title="Leads by lifecycle stage", title_justify="left", min_width=30)
    stages.add_column("stage")
    stages.add_column("leads", justify="right")
    for k, v in sorted(o["lifecycle_stages"].items(), key=lambda kv: -kv[1]):
        stages.add_row(k, f"{v:,}")
    console.print(stages)
    sent = Table(title="Emails sent per step", title_justify="left")
    for col in ("campaign", "track", "step", "sent"):
        sent.add_column(col, justify="right" if col == "sent" else "left")
    for r in o["sent_by_step"]:
        sent.add_row(r["campaign"], r["track"], r["step"], f"{r['sent']:,}")
    console.print(sent)
    if o["handoffs_by_owner"]:
        console.print("MQL owners (round-robin): " + ", ".join(
            f"{k} {v}" for k, v in sorted(o["handoffs_by_owner"].items())))
    console.print(f"\nOutbox: [bold]{o['outbox']}[/bold] (open it in a browser; each "
                  "message is a real .eml file)", soft_wrap=True)
    console.print(f"Database: {o['database_url']}", soft_wrap=True)
    console.print("The loop in numbers: [bold]nurture report funnel[/bold] (with the export "
                  "below)", soft_wrap=True)
    labels = {"mql": "an MQL", "recycled": "a recycled lead",
              "switched_to_evaluation": "a lead that moved to evaluation content",
              "research": "a research-stage lead"}
    shown = [(labels[k], v) for k, v in o["examples"].items() if v]
    if shown:
        cmd = _command_name()
        console.print("\n[bold]Look closer[/bold] (why each lead got what it got):")
        console.print(f"  export NURTURE_DATABASE_URL={o['database_url']}", soft_wrap=True)
        for label, email in shown:
            console.print(f"  {cmd} lead show {email}   [dim]# {label}[/dim]", soft_wrap=True)


def _command_name() -> str:
    """How the user can type this command: `nurture` when on PATH, else the path they used."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "nurture"
    if Path(argv0).name == "nurture" and shutil.which("nurture") == str(Path(argv0).resolve()):
        return "nurture"
    if Path(argv0).name == "nurture":
        return os.path.relpath(argv0) if not argv0.startswith("..") else argv0
    return "nurture"
