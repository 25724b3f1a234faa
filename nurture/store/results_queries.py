"""Set-based reads for the results reports (`nurture.services.results`): each report is a handful of
aggregate SQL statements on SQLite and PostgreSQL — no per-lead rows reach Python.

Engagement comes from `activities` (the webhook stores the touch id in `properties`), the
delivery outcome from `touches`, conversions from `transitions` (stage entries; deal value in
`transitions.amount`). Times are compared in SQL; day differences are fractional days.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Float,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.engine import Engine

from nurture.core.domain import CUSTOMER, OPPORTUNITY, SENT
from nurture.core.reporting import ATTRIBUTED, CONVERSIONS, SOURCE_STAGES, UNKNOWN, Window
from nurture.store import tables as t
from nurture.store.pauses import CampaignStatus
from nurture.store.report_sql import (
    days_between,
    in_window,
    month_of,
    plus_days,
    read_snapshot,
    touch_engagement,
)


def step_rows(engine: Engine, w: Window, credit_days: float) -> list[dict[str, Any]]:
    """Per campaign × track × step × variant: sent touches (sent_at in the window) and what
    followed each (engagement on that touch; stage entries of its lead within
    `credit_days` after it was sent)."""
    T, TR = t.touches, t.transitions
    eng = touch_engagement(engine, w.start)
    stage = func.max
    conv = (select(T.c.id.label("tid"),
                   *[stage(case((TR.c.to_stage == s, 1), else_=0)).label(f"c_{s}")
                     for s in CONVERSIONS])
            .select_from(T.join(TR, and_(
                TR.c.lead_id == T.c.lead_id, TR.c.to_stage.in_(CONVERSIONS),
                TR.c.at >= T.c.sent_at, TR.c.at < plus_days(engine, T.c.sent_at, credit_days))))
            .where(T.c.status == SENT, *in_window(T.c.sent_at, w),
                   *([T.c.campaign == w.campaign] if w.campaign else []))
            .group_by(T.c.id).subquery("conv"))

    def total(col):
        return func.coalesce(func.sum(col), 0)

    # three aggregates by step, each driven by its smallest side and joined on the touch's
    # primary key (a LEFT JOIN of every touch to grouped subqueries has no index to use on
    # SQLite), merged by step in Python: a few rows each
    variant = func.coalesce(T.c.variant, "")
    keys = (T.c.campaign, T.c.track, T.c.step, variant)
    cols = (T.c.campaign, T.c.track, T.c.step, variant.label("variant"))
    where = [T.c.status == SENT, *in_window(T.c.sent_at, w),
             *([T.c.campaign == w.campaign] if w.campaign else [])]
    sent_q = (select(*cols, func.count(T.c.id).label("sent"),
                     total(case((T.c.delivered_at.is_not(None), 1), else_=0)).label("delivered"),
                     total(case((T.c.delivery_status == "bounced", 1), else_=0))
                     .label("bounced"))
              .where(*where).group_by(*keys).order_by(*keys))
    eng_q = (select(*cols, total(eng.c.opened).label("opens"),
                    total(case((eng.c.opened == 0, eng.c.machine_open), else_=0))
                    .label("machine_opens_only"),
                    total(eng.c.clicked).label("clicks"),
                    total(case((eng.c.clicked == 0, eng.c.scanner_click), else_=0))
                    .label("scanner_clicks_only"),
                    total(eng.c.unsubscribed).label("unsubscribes"),
                    total(eng.c.spam).label("spam_reports"))
             .select_from(eng.join(T, T.c.id == eng.c.tid)).where(*where).group_by(*keys))
    conv_q = (select(*cols, *[total(conv.c[f"c_{s}"]).label(s) for s in CONVERSIONS])
              .select_from(conv.join(T, T.c.id == conv.c.tid)).group_by(*keys))
    sent, engaged, converted = read_snapshot(engine, sent_q, eng_q, conv_q)
    extra: dict[tuple, dict[str, Any]] = {}
    for r in engaged + converted:
        extra.setdefault((r["campaign"], r["track"], r["step"], r["variant"]), {}).update(r)
    zero = dict.fromkeys(("opens", "machine_opens_only", "clicks", "scanner_clicks_only",
                          "unsubscribes", "spam_reports", *CONVERSIONS), 0)
    return [{**r, **zero, **extra.get((r["campaign"], r["track"], r["step"], r["variant"]),
                                      {})} for r in sent]


def _group_expr(engine: Engine, by: str, touch: str):
    L = t.leads
    if by == "month":
        return month_of(engine, L.c.created_at)
    col = {"source": "source", "utm_campaign": "utm_campaign", "utm_source": "utm_source",
           "utm_medium": "utm_medium"}[by]
    if touch == "first":
        col = f"first_{col}"
    return func.coalesce(func.nullif(L.c[col], ""), UNKNOWN)


def source_rows(engine: Engine, w: Window, by: str = "source", touch: str = "first"
                ) -> dict[str, list[dict[str, Any]]]:
    """Leads created in the window (a cohort), grouped by `by` (source, utm_* or month)
    of their `first` or `latest` touch; the stages they entered since (first entry each),
    median days from creation to it, deal values, and costs for the window."""
    L, TR, T, C = t.leads, t.transitions, t.touches, t.source_costs
    g = _group_expr(engine, by, touch).label("grp")
    lead_where = in_window(L.c.created_at, w)
    if w.campaign:
        lead_where.append(exists(select(T.c.id).where(T.c.lead_id == L.c.id,
                                                      T.c.campaign == w.campaign)))
    leads_q = (select(g, func.count(L.c.id).label("leads")).where(*lead_where)
               .group_by(g).order_by(g))
    money = (select(g, func.coalesce(func.sum(case((TR.c.to_stage == CUSTOMER, TR.c.amount))),
                                     0.0).label("revenue"),
                    func.coalesce(func.sum(case((TR.c.to_stage == OPPORTUNITY,
                                                 TR.c.amount))), 0.0).label("pipeline"))
             .select_from(L.join(TR, TR.c.lead_id == L.c.id))
             .where(*lead_where, TR.c.to_stage.in_((OPPORTUNITY, CUSTOMER)))
             .group_by(g))
    per_lead = (select(g, TR.c.to_stage.label("stage"),
                       days_between(engine, L.c.created_at, func.min(TR.c.at)).label("d"))
                .select_from(L.join(TR, TR.c.lead_id == L.c.id))
                .where(*lead_where, TR.c.to_stage.in_(SOURCE_STAGES))
                .group_by(L.c.id, g, TR.c.to_stage).subquery("per_lead"))
    part = [per_lead.c.grp, per_lead.c.stage]
    ranked = select(per_lead.c.grp, per_lead.c.stage, per_lead.c.d,
                    func.row_number().over(partition_by=part, order_by=per_lead.c.d)
                    .label("rn"),
                    func.count().over(partition_by=part).label("n")).subquery("ranked")
    middle = ranked.c.rn.in_([(ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2])
    stages_q = (select(ranked.c.grp, ranked.c.stage, func.max(ranked.c.n).label("reached"),
                       func.avg(case((middle, ranked.c.d))).label("median_days"))
                .group_by(ranked.c.grp, ranked.c.stage))
    queries = [leads_q, money, stages_q]
    if by in ("source", "utm_campaign"):
        key = C.c.source if by == "source" else C.c.utm_campaign
        cost_q = (select(func.coalesce(func.nullif(key, ""), UNKNOWN).label("grp"),
                         func.sum(C.c.amount).label("cost"))
                  .where(*in_window(C.c.period_start, w)).group_by(key))
        if by == "source":
            cost_q = cost_q.where(C.c.utm_campaign == "")
        else:
            cost_q = cost_q.where(C.c.source == "")
        queries.append(cost_q)
    res = read_snapshot(engine, *queries)
    return {"leads": res[0], "money": res[1], "stages": res[2],
            "costs": res[3] if len(res) > 3 else []}


def attribution_rows(engine: Engine, w: Window, lookback_days: float,
                     half_life_days: float) -> dict[str, list[dict[str, Any]]]:
    """Conversions (stage entries into MQL, opportunity, customer with `at` in the window)
    and their credit per campaign × step under four models, plus per source."""
    T, TR, L = t.touches, t.transitions, t.leads
    conv_where = [TR.c.to_stage.in_(ATTRIBUTED), *in_window(TR.c.at, w)]
    if w.campaign:
        conv_where.append(exists(select(T.c.id).where(T.c.lead_id == TR.c.lead_id,
                                                      T.c.campaign == w.campaign)))
    age = days_between(engine, T.c.sent_at, TR.c.at)
    weight = func.power(0.5, age / half_life_days)
    part = TR.c.id
    pairs = (select(TR.c.id.label("cid"), TR.c.to_stage.label("stage"),
                    func.coalesce(TR.c.amount, 0.0).label("amount"), T.c.campaign, T.c.step,
                    func.row_number().over(partition_by=part,
                                           order_by=(T.c.sent_at, T.c.id)).label("rf"),
                    func.row_number().over(partition_by=part,
                                           order_by=(T.c.sent_at.desc(), T.c.id.desc()))
                    .label("rl"),
                    cast(func.count().over(partition_by=part), Float).label("k"),
                    weight.label("w"), func.sum(weight).over(partition_by=part).label("ws"))
             .select_from(TR.join(T, and_(
                 T.c.lead_id == TR.c.lead_id, T.c.status == SENT, T.c.sent_at <= TR.c.at,
                 T.c.sent_at >= plus_days(engine, TR.c.at, -lookback_days))))
             .where(*conv_where))
    if w.campaign:
        pairs = pairs.where(T.c.campaign == w.campaign)
    p = pairs.subquery("pairs")
    first, last = case((p.c.rf == 1, 1.0), else_=0.0), case((p.c.rl == 1, 1.0), else_=0.0)
    linear, decay = 1.0 / p.c.k, p.c.w / p.c.ws
    models = {"first": first, "last": last, "linear": linear, "time_decay": decay}
    by_step = (select(p.c.stage, p.c.campaign, p.c.step,
                      *[func.sum(m).label(n) for n, m in models.items()],
                      *[func.sum(m * p.c.amount).label(f"{n}_amount")
                        for n, m in models.items()])
               .group_by(p.c.stage, p.c.campaign, p.c.step)
               .order_by(p.c.stage, p.c.campaign, p.c.step))
    totals = (select(TR.c.to_stage.label("stage"), func.count(TR.c.id).label("conversions"),
                     func.coalesce(func.sum(TR.c.amount), 0.0).label("amount"))
              .where(*conv_where).group_by(TR.c.to_stage))
    touched = (select(p.c.stage, func.count(func.distinct(p.c.cid)).label("touched"))
               .group_by(p.c.stage))
    # per source: the lead's first-touch source and its latest source get the conversion
    src_rows = []
    for model, col in (("first_touch_source", L.c.first_source),
                       ("latest_source", L.c.source)):
        g = func.coalesce(func.nullif(col, ""), UNKNOWN)
        src_rows.append(select(literal(model).label("model"), TR.c.to_stage.label("stage"),
                               g.label("source"), func.count(TR.c.id).label("conversions"),
                               func.coalesce(func.sum(TR.c.amount), 0.0).label("amount"))
                        .select_from(TR.join(L, L.c.id == TR.c.lead_id))
                        .where(*conv_where).group_by(TR.c.to_stage, g))
    res = read_snapshot(engine, by_step, totals, touched, *src_rows)
    hit = {r["stage"]: r["touched"] for r in res[2]}
    for r in res[1]:
        r["touched"] = hit.get(r["stage"], 0)
    return {"by_step": res[0], "totals": res[1], "by_source": res[3] + res[4]}


def deliverability_rows(engine: Engine, end: datetime, days: float,
                        campaign: str | None = None, since_resume: bool = False
                        ) -> list[dict[str, Any]]:
    """Per campaign over the rolling window [end - days, end) of sent_at: sent, delivered,
    hard bounces, spam reports and unsubscribes on those touches. `since_resume` starts a
    resumed campaign's window at its resume (what the guard judges)."""
    T, CS = t.touches, t.campaign_status
    eng = touch_engagement(engine, end - timedelta(days=days))
    start = end - timedelta(days=days)

    def total(col):
        return func.coalesce(func.sum(col), 0)

    where = [T.c.status == SENT, T.c.sent_at >= start, T.c.sent_at < end]
    if since_resume:
        where.append(or_(CS.c.resumed_at.is_(None), T.c.sent_at >= CS.c.resumed_at))
    if campaign:
        where.append(T.c.campaign == campaign)
    sent_q = (select(T.c.campaign, func.count(T.c.id).label("sent"),
                     total(case((T.c.delivered_at.is_not(None), 1), else_=0)).label("delivered"),
                     total(case((T.c.delivery_status == "bounced", 1), else_=0))
                     .label("bounced"))
              .select_from(T.outerjoin(CS, CS.c.campaign == T.c.campaign))
              .where(*where).group_by(T.c.campaign).order_by(T.c.campaign))
    # engagement driven by the (few) engaged touches, joined on the touch's primary key
    eng_q = (select(T.c.campaign, total(eng.c.spam).label("spam_reports"),
                    total(eng.c.unsubscribed).label("unsubscribes"))
             .select_from(eng.join(T, T.c.id == eng.c.tid)
                          .outerjoin(CS, CS.c.campaign == T.c.campaign))
             .where(*where).group_by(T.c.campaign))
    sent, engaged = read_snapshot(engine, sent_q, eng_q)
    by = {r["campaign"]: r for r in engaged}
    return [{**r, "spam_reports": 0, "unsubscribes": 0,
             **{k: v for k, v in by.get(r["campaign"], {}).items() if k != "campaign"}}
            for r in sent]


class SqlResultsQueries:
    """The aggregates the results reports need (`nurture.services.ports.ResultsQueries`),
    computed in SQL on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def step_rows(self, w: Window, credit_days: float) -> list[dict[str, Any]]:
        return step_rows(self.engine, w, credit_days)

    def source_rows(self, w: Window, by: str, touch: str) -> dict[str, list[dict[str, Any]]]:
        return source_rows(self.engine, w, by, touch)

    def attribution_rows(self, w: Window, lookback_days: float, half_life_days: float
                         ) -> dict[str, list[dict[str, Any]]]:
        return attribution_rows(self.engine, w, lookback_days, half_life_days)

    def deliverability_rows(self, end: datetime, days: float, campaign: str | None
                            ) -> list[dict[str, Any]]:
        return deliverability_rows(self.engine, end, days, campaign)

    def campaign_statuses(self) -> list[dict[str, Any]]:
        return CampaignStatus(self.engine).list()
