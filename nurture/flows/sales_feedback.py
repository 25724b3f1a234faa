"""Sales feedback as a Prefect flow: run it from the UI ("Run ▸ Custom run") or from an
automation (e.g. a CRM webhook trigger). The same service as `nurture sales` and
`POST /sales/feedback`; this door also announces the outcome as a Prefect event and leaves
an artifact saying what changed.

The custom-run form shows `action` as a list and the parameter descriptions below. Reason
codes are whatever `routing.sales_rejected` in lifecycle.yaml defines — config is not read
at import, so the description names the shipped codes (a test keeps them in step with
campaigns/lifecycle.yaml) and the run checks `reason` against the live config, naming the
parameter and the valid codes when it is wrong.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from nurture.core.domain import LeadNotFound
from nurture.core.sales import FeedbackRefused
from nurture.flows.common import (
    changes_markdown,
    emit_lead_events,
    lead_ref,
    open_app,
    parse_as_of,
    run_suffix,
)
from nurture.services.feedback import record_feedback
from nurture.store.sales import SalesStore

CHANGES_KEY = "sales-feedback-changes"
Action = Literal["accept", "reject", "opportunity", "won", "lost"]


class SalesFeedbackRefused(ValueError):
    """The feedback names a parameter wrongly or does not apply; nothing changed."""


def _name() -> str:
    """`sales-accept-2026-11-23-1000-lead-1a2b3c4d-3f9a`: the lead as a hash of its email, never
    the address itself (run names are visible to the whole workspace)."""
    p = flow_run.parameters or {}
    try:
        stamp = f"{parse_as_of(p.get('at')):%Y-%m-%d-%H%M}"
    except (ValueError, TypeError):
        stamp = "bad-at"
    return (f"sales-{p.get('action', 'feedback')}-{stamp}-{lead_ref(str(p.get('email', '')))}"
            f"-{run_suffix()}")


@flow(name="sales-feedback", flow_run_name=_name, validate_parameters=True)
def sales_feedback(email: str, action: Action, reason: str | None = None,
                   note: str | None = None, actor: str = "sales:prefect",
                   at: str | None = None) -> dict[str, Any]:
    """Record what sales did with a lead it was handed.

    Args:
        email: The lead's email address.
        action: accept (mql → sal) | reject (needs a reason) | opportunity | won (→ customer)
            | lost (back to nurture after 90 days, or as the reason says).
        reason: Reason code from routing.sales_rejected in campaigns/lifecycle.yaml, required
            for reject, optional for lost. Shipped codes: not_ready (recycle 30 days),
            bad_timing (90 days), no_budget (180 days), bad_data (disqualify), competitor
            (disqualify).
        note: Free text kept with the transition (e.g. "call booked").
        actor: Who gives the feedback, recorded with the transition.
        at: ISO 8601 time of the feedback, e.g. 2026-11-23T10:00:00Z. Empty: now.
    """
    app = open_app()
    when = parse_as_of(at)
    try:
        result = record_feedback(SalesStore(app.engine), app.rules, email, action, when,
                                 reason=reason or None, note=note, actor=actor)
    except FeedbackRefused as exc:
        raise SalesFeedbackRefused(exc.door_message("parameter '{}'")) from None
    except LeadNotFound as exc:
        raise SalesFeedbackRefused(f"parameter 'email': {exc}") from None
    get_run_logger().info("lead #%s: %s -> %s (%s)", result["lead_id"], result["from"],
                          result["to"], result["reason"])
    # the feedback recorded its events with the transition; announce them (and any left)
    with app.lease("sales-feedback", when) as lease:
        emitted = emit_lead_events(app, lease)
    change = {"event": f"nurture.lead.{result['events'][0]}" if result["events"] else "none",
              "lead_id": result["lead_id"], "email": result["email"], "from": result["from"],
              "to": result["to"], "rule": result["rule"], "actor": result["actor"],
              "campaign": next((e.get("campaign") for e in emitted
                                if e["lead_id"] == result["lead_id"]), None)}
    create_markdown_artifact(
        changes_markdown(f"Sales feedback: {action}",
                         f"{result['reason']}"
                         + (f"; back to nurture on {result['recycle_until'][:10]}"
                            if result["recycle_until"] else "") + ".", [change]),
        key=CHANGES_KEY, description=f"Sales feedback {action}: {result['from']} → "
        f"{result['to']}")
    return result
