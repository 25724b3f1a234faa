"""Sales feedback as a Prefect flow: run it from the UI ("Run ▸ Custom run") or from an
automation (e.g. a CRM webhook trigger). The same service as `nurture sales` and
`POST /sales/feedback`; this door also announces the outcome as a Prefect event."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger

from flows.common import emit_lead_events, parse_as_of
from nurture.settings import Settings
from nurture.wiring import App


def _name() -> str:
    from prefect.runtime import flow_run

    p = flow_run.parameters or {}
    return f"sales-{p.get('action', 'feedback')}-{p.get('email', '')}"


@flow(name="sales-feedback", flow_run_name=_name, validate_parameters=True)
def sales_feedback(email: str, action: Literal["accept", "reject", "opportunity", "won", "lost"],
                   reason: str | None = None, note: str | None = None,
                   actor: str = "sales:prefect", at: str | None = None) -> dict[str, Any]:
    """Record what sales did with a lead.

    action: accept | reject | opportunity | won | lost.
    reason: a code from routing.sales_rejected (required for reject, optional for lost).
    """
    from lead_store.sales import SalesStore
    from nurture.sales import record_feedback

    app = App(Settings())
    app.require_schema()
    when = parse_as_of(at)
    result = record_feedback(SalesStore(app.engine), app.rules, email, action, when,
                             reason=reason, note=note, actor=actor)
    get_run_logger().info("%s: %s -> %s (%s)", result["email"], result["from"], result["to"],
                          result["reason"])
    # the feedback recorded its events with the transition; announce them (and any left)
    with app.lease("sales-feedback", when) as lease:
        emit_lead_events(app, lease)
    return result
