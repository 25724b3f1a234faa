"""The rows the funnel report needs, read in bulk: one query per table, only the columns
`nurture.funnel.compute_funnel` looks at."""

from __future__ import annotations

from sqlalchemy import case, select
from sqlalchemy.engine import Engine

from lead_store import tables as t
from nurture.domain import RECYCLED
from nurture.funnel import FunnelHandoff, FunnelLead, FunnelTransition

# rows fetched per round trip; PostgreSQL streams them through a server-side cursor
BATCH = 20_000


def load_funnel_rows(engine: Engine) -> tuple[list[FunnelLead], list[FunnelTransition],
                                             list[FunnelHandoff]]:
    """Every lead, transition and handoff as the funnel report's row types.

    On PostgreSQL the three queries share one REPEATABLE READ snapshot, so a cycle writing
    meanwhile cannot make the tables disagree. Transition reasons and rules are only read for
    transitions into `recycled` (the only ones the report classifies); MQL reasons are long
    and there is one per MQL. Stage and source strings are shared, not one copy per row.
    """
    L, TR, H = t.leads, t.transitions, t.handoffs
    words: dict[str | None, str | None] = {None: None}

    def one(s: str | None) -> str | None:
        w = words.get(s)
        if w is None and s is not None:
            w = words[s] = s
        return w

    lead_q = select(L.c.id, L.c.source, L.c.lifecycle_stage, L.c.stage_entered_at,
                    L.c.created_at)
    recycle = TR.c.to_stage == RECYCLED
    tr_q = select(TR.c.lead_id, TR.c.from_stage, TR.c.to_stage, TR.c.at,
                  case((recycle, TR.c.rule), else_=None).label("rule"),
                  case((recycle, TR.c.reason), else_=None).label("reason"), TR.c.id)
    h_q = select(H.c.lead_id, H.c.status, H.c.created_at, H.c.sla_due_at, H.c.resolved_at,
                 H.c.outcome_reason)
    opts: dict = {"yield_per": BATCH}
    conn_opts: dict = ({"isolation_level": "REPEATABLE READ"}
                       if engine.dialect.name == "postgresql" else {})
    with engine.connect().execution_options(**conn_opts) as conn, conn.begin():
        leads = [FunnelLead(i, one(src), one(stage), entered, created)
                 for i, src, stage, entered, created
                 in conn.execute(lead_q.execution_options(**opts))]
        transitions = [FunnelTransition(lead_id, one(a), one(b), at, rule, reason, i)
                       for lead_id, a, b, at, rule, reason, i
                       in conn.execute(tr_q.execution_options(**opts))]
        handoffs = [FunnelHandoff(lead_id, one(status), created, due, resolved, one(why))
                    for lead_id, status, created, due, resolved, why
                    in conn.execute(h_q.execution_options(**opts))]
    return leads, transitions, handoffs
