"""`nurture lead show`: everything about one lead, and why it is where it is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nurture.core.domain import normalise_email
from nurture.core.evaluation import lead_facts
from nurture.core.segmentation import buying_stage


class LeadNotFound(LookupError):
    pass


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def explain_lead(store, rules, email: str, default_tz: str,
                 as_of: datetime | None = None) -> dict[str, Any]:
    """The lead as JSON-ready data: stages, scores with their breakdown, campaign, touches in
    order and transitions with reasons. Scores are recomputed for `as_of` (default now)."""
    email = normalise_email(email)
    detail = store.lead_detail(email)
    if detail is None:
        raise LeadNotFound(f"no lead with email {email!r}")
    row = detail["row"]
    as_of = as_of or datetime.now(UTC)
    points = {k: v[0] for k, v in rules.scores.points.items()}
    snap = store.snapshot(row.id, as_of, rules.horizon_days, points, default_tz)
    facts = lead_facts(snap, rules, as_of)
    return {
        "email": row.email,
        "name": " ".join(p for p in (row.first_name, row.last_name) if p) or None,
        "company": row.company,
        "lifecycle_stage": row.lifecycle_stage,
        "buying_stage": buying_stage(rules.stages, facts),
        "fit_score": round(facts.fit, 2),
        "engagement_score": round(facts.engagement, 2),
        "score": round(facts.fit + facts.engagement, 2),
        "grade": facts.grade,
        "scored_at": as_of.isoformat(),
        "last_cycle": {"scored_at": _iso(row.scored_at), "score": row.score,
                       "buying_stage": row.buying_stage},
        "score_breakdown": {
            **rules.scores.breakdown(facts),
            "engagement_counts_since": _iso(row.engagement_since),
        },
        "campaign": row.campaign,
        "track": row.track,
        "recycle_count": row.recycle_count,
        "recycle_until": _iso(row.recycle_until),
        "suppressed": detail["suppression"]["reason"] if detail["suppression"] else None,
        "activities": detail["activity_count"],
        "fields": {k: v for k, v in detail["fields"].items() if v is not None},
        "touches": [{"step": t["step"], "campaign": t["campaign"], "track": t["track"],
                     "variant": t["variant"], "round": t["round"], "status": t["status"],
                     "send_at": _iso(t["send_at"]), "sent_at": _iso(t["sent_at"]),
                     "subject": t["subject"], "error": t["error"]}
                    for t in detail["touches"]],
        "transitions": [{"from": t["from_stage"], "to": t["to_stage"], "reason": t["reason"],
                         "rule": t["rule"], "actor": t["actor"], "note": t["note"],
                         "at": _iso(t["at"])} for t in detail["transitions"]],
        "handoffs": [{"owner": h["owner"], "status": h["status"], "rule": h["rule"],
                      "created_at": _iso(h["created_at"]), "sla_due_at": _iso(h["sla_due_at"]),
                      "resolved_at": _iso(h["resolved_at"]),
                      "outcome_reason": h["outcome_reason"]} for h in detail["handoffs"]],
    }


def print_lead(info: dict[str, Any], console=None) -> None:
    from rich.console import Console
    from rich.markup import escape as e  # lead data and rule text may contain [brackets]
    from rich.table import Table

    console = console or Console()
    name = e(f"{info['name']} <{info['email']}>" if info["name"] else info["email"])
    console.print(f"[bold]{name}[/bold]" + (f" — {e(info['company'])}" if info["company"] else ""))
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
    console.print(grid)

    fit = info["score_breakdown"]["fit"]
    eng = info["score_breakdown"]["engagement"]
    if fit or eng:
        t = Table(title="Score breakdown", title_justify="left")
        t.add_column("part")
        t.add_column("rule / activity")
        t.add_column("points", justify="right")
        for f in fit:
            t.add_row("fit", e(f["rule"]), f"{f['points']:+g}")
        for k, v in eng.items():
            t.add_row("engagement", f"{k} (decayed)", f"{v:+.1f}")
        console.print(t)

    if info["touches"]:
        t = Table(title="Touches (in order)", title_justify="left")
        for col in ("#", "campaign", "track", "step", "variant", "status", "sent at",
                    "subject"):
            t.add_column(col)
        for i, tc in enumerate(info["touches"], 1):
            when = (tc["sent_at"] or tc["send_at"] or "")[:16].replace("T", " ")
            t.add_row(str(i), e(tc["campaign"]), e(tc["track"]), e(tc["step"]),
                      e(tc["variant"] or ""), tc["status"], when,
                      e(tc["subject"] or tc["error"] or ""))
        console.print(t)
    else:
        console.print("[dim]No touches yet.[/dim]")
    if info["transitions"]:
        t = Table(title="Transitions (why this lead is here)", title_justify="left")
        for col in ("at", "from → to", "reason", "actor"):
            t.add_column(col)
        for tr in info["transitions"]:
            t.add_row(tr["at"][:16].replace("T", " "), f"{tr['from']} → {tr['to']}",
                      e(tr["reason"] + (f" — {tr['note']}" if tr["note"] else "")), e(tr["actor"]))
        console.print(t)
    for h in info["handoffs"]:
        console.print(f"Handoff to [bold]{e(h['owner'])}[/bold]: {h['status']}, SLA due "
                      f"{h['sla_due_at'][:16].replace('T', ' ')}"
                      + (f" ({h['outcome_reason']})" if h["outcome_reason"] else ""))
