"""`nurture lead show`: everything about one lead, and why it is where it is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nurture.core.domain import LeadNotFound, normalise_email
from nurture.core.evaluation import lead_facts
from nurture.core.rules import Rules
from nurture.core.segmentation import buying_stage
from nurture.services.ports import LeadViewStore


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def explain_lead(store: LeadViewStore, rules: Rules, email: str, default_tz: str,
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
