"""Results reports: which content works, for whom, and where pipeline comes from.

The lead store aggregates in SQL (`nurture.store.results_queries`); the functions here turn
those few aggregate rows into reports — rates, the A/B test (`ab_testing`), cost ratios — and
say what each figure means (`DEFINITIONS`, printed with every report and kept in `--json`).
Nothing here reads a database, so every number can be checked by hand in a unit test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nurture.core.reporting import ATTRIBUTED, CONVERSIONS, SOURCE_STAGES, UNKNOWN, Window
from nurture.services.ab_testing import MIN_SAMPLE, ab_report, ratio
from nurture.services.ports import ResultsQueries

CREDIT_DAYS = 14.0         # a stage entry is credited to touches sent this many days before
LOOKBACK_DAYS = 90.0       # attribution: touches this long before a conversion get credit
HALF_LIFE_DAYS = 7.0       # time decay: a touch this much older gets half the weight

# the bulk-sender limits Gmail and Yahoo enforce; judged over a rolling window
SPAM_LIMIT = 0.003
BOUNCE_LIMIT = 0.05
GUARD_DAYS = 7.0
GUARD_MIN_SENT = 500       # fewer sends than this in the window: rates too noisy to pause on

DEFINITIONS: dict[str, dict[str, str]] = {
    "steps": {
        "scope": "touches with status `sent` whose sent_at is in [--from, --to), per "
                 "campaign × track × step × variant ('' = no variants)",
        "sent": "touches handed to the transport",
        "delivered": "of them, touches with a `delivered` event",
        "bounced": "touches whose delivery ended `bounced` (hard bounce; blocks not counted)",
        "opens": "touches with a human open or click (unique per touch = per lead and "
                 "step); machine opens (Apple MPP pre-fetch) are excluded",
        "machine_opens_only": "touches with a machine open and no human open or click",
        "clicks": "touches with a human click; clicks within seconds of delivery are link "
                  "scanners and excluded",
        "scanner_clicks_only": "touches with a scanner click and no human click",
        "open_rate": "opens / sent", "click_rate": "clicks / sent",
        "click_to_open": "clicks / opens",
        "unsubscribes": "touches followed by an unsubscribe attributed to that touch",
        "spam_reports": "touches the recipient reported as spam",
        "mql/sal/opportunity/customer": "touches whose lead entered that stage within "
                                        "--credit-days after the send (influence: one "
                                        "conversion credits every touch in the window, so "
                                        "steps do not add up to the total — see attribution)",
    },
    "ab": {
        "scope": "steps with two or more variants in the steps report",
        "metric": "success per send: click (unique human click), open, or mql (within "
                  "--credit-days), chosen with --metric",
        "test": "two-proportion z-test (pooled standard error, two-sided) of each variant "
                "against the first (the control); p < 0.05 is significant",
        "ci": "95 % Newcombe hybrid score interval (from Wilson intervals) for the "
              "difference variant − control, in rate points",
        "warning": f"fewer than {MIN_SAMPLE} sends in a variant, or fewer than 5 successes "
                   "or failures: the normal approximation is unreliable; do not decide",
    },
    "sources": {
        "scope": "leads created in [--from, --to) (a cohort), grouped by --by (source, "
                 "utm_campaign, utm_source, utm_medium, or month = created month) of their "
                 "--touch (first: what they arrived with; latest: after re-imports)",
        "reached": "leads of the group that ever entered the stage (first entry, any time "
                   "up to now); a lead that skipped a stage is not counted there",
        "won": "leads that became customers",
        "revenue": "sum of amounts given with `sales won --amount`",
        "pipeline": "sum of amounts given with `sales opportunity --amount`",
        "cost": "imported costs (`nurture costs import`) for the group whose period starts "
                "in the window (by source or utm_campaign only)",
        "cost_per_*": "cost / leads, MQLs, opportunities", "roi": "(revenue − cost) / cost",
        "median_days_to_*": "median days from the lead's creation to its first entry into "
                            "the stage, over leads that reached it",
    },
    "attribution": {
        "scope": "conversions = entries into mql, opportunity, customer with `at` in "
                 "[--from, --to); credited to the lead's `sent` touches in the "
                 f"--lookback-days (default {LOOKBACK_DAYS:g}) before the conversion",
        "first": "all credit to the earliest touch", "last": "all credit to the latest touch",
        "linear": "1/k credit to each of the k touches",
        "time_decay": "credit ∝ 0.5^(days before the conversion / --half-life); sums to 1",
        "*_amount": "the deal amount (opportunity, won) times the credit",
        "unattributed": "conversions with no touch in the lookback",
        "by_source": "first_touch_source: the lead's original source; latest_source: its "
                     "current one — each gets the whole conversion",
    },
    "deliverability": {
        "scope": "touches sent in the rolling --days window ending at --to (default now)",
        "bounce_rate": "hard bounces / sent",
        "spam_rate": "spam reports / delivered (/ sent when no delivered events are known)",
        "unsubscribe_rate": "unsubscribes / sent",
        "guard": f"a campaign with ≥ {GUARD_MIN_SENT} sends in the last {GUARD_DAYS:g} days "
                 f"(since its last resume) is paused when spam_rate > {SPAM_LIMIT:.1%} or "
                 f"bounce_rate > {BOUNCE_LIMIT:.0%} (Gmail/Yahoo bulk-sender limits)",
    },
}


def _f(v: Any) -> float:
    return float(v or 0)


# -- steps --------------------------------------------------------------------------------
def steps_report(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        r = {k: (int(v) if k not in ("campaign", "track", "step", "variant") else v)
             for k, v in r.items()}
        r.update(open_rate=ratio(r["opens"], r["sent"]),
                 click_rate=ratio(r["clicks"], r["sent"]),
                 click_to_open=ratio(r["clicks"], r["opens"]),
                 bounce_rate=ratio(r["bounced"], r["sent"]),
                 unsubscribe_rate=ratio(r["unsubscribes"], r["sent"]),
                 mql_rate=ratio(r[CONVERSIONS[0]], r["sent"]))
        out.append(r)
    return out


# -- sources ------------------------------------------------------------------------------
def sources_report(raw: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for r in raw["leads"]:
        groups[r["grp"]] = {"group": r["grp"], "leads": int(r["leads"])}
    for r in raw["stages"]:
        g = groups.setdefault(r["grp"], {"group": r["grp"], "leads": 0})
        g[r["stage"]] = int(r["reached"])
        g[f"median_days_to_{r['stage']}"] = (None if r["median_days"] is None
                                              else round(float(r["median_days"]), 2))
    for r in raw["money"]:
        g = groups.get(r["grp"])
        if g is not None:
            g["revenue"], g["pipeline"] = round(_f(r["revenue"]), 2), round(_f(r["pipeline"]), 2)
    costs = {r["grp"]: _f(r["cost"]) for r in raw["costs"]}
    out = []
    for g in groups.values():
        for s in SOURCE_STAGES:
            g.setdefault(s, 0)
            g.setdefault(f"median_days_to_{s}", None)
        g.setdefault("revenue", 0.0)
        g.setdefault("pipeline", 0.0)
        cost = costs.get(g["group"])
        g["cost"] = cost
        g["cost_per_lead"] = None if cost is None else ratio(cost, g["leads"], 2)
        g["cost_per_mql"] = None if cost is None else ratio(cost, g["mql"], 2)
        g["cost_per_opportunity"] = None if cost is None else ratio(cost, g["opportunity"], 2)
        g["roi"] = None if not cost else round((g["revenue"] - cost) / cost, 4)
        g["mql_rate"] = ratio(g["mql"], g["leads"])
        g["won"] = g.pop("customer")
        g["median_days_to_won"] = g.pop("median_days_to_customer")
        out.append({k: g[k] for k in SOURCE_COLUMNS})
    return sorted(out, key=lambda g: (-g["leads"], g["group"] == UNKNOWN, g["group"]))


SOURCE_COLUMNS = ("group", "leads", "mql", "sal", "sql", "opportunity", "won", "mql_rate",
                  "pipeline", "revenue", "cost", "cost_per_lead", "cost_per_mql",
                  "cost_per_opportunity", "roi", "median_days_to_mql", "median_days_to_sal",
                  "median_days_to_sql", "median_days_to_opportunity", "median_days_to_won")


# -- attribution --------------------------------------------------------------------------
MODELS = ("first", "last", "linear", "time_decay")


def attribution_report(raw: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    totals = {r["stage"]: {"conversions": int(r["conversions"]),
                           "amount": round(_f(r["amount"]), 2),
                           "with_touch": int(r["touched"]),
                           "unattributed": int(r["conversions"]) - int(r["touched"])}
              for r in raw["totals"]}
    for s in ATTRIBUTED:
        totals.setdefault(s, {"conversions": 0, "amount": 0.0, "with_touch": 0,
                              "unattributed": 0})
    steps = []
    for r in raw["by_step"]:
        item = {"stage": r["stage"], "campaign": r["campaign"], "step": r["step"]}
        for m in MODELS:
            item[m] = round(_f(r[m]), 3)
            item[f"{m}_amount"] = round(_f(r[f"{m}_amount"]), 2)
        steps.append(item)
    sources = [{"model": r["model"], "stage": r["stage"], "source": r["source"],
                "conversions": int(r["conversions"]), "amount": round(_f(r["amount"]), 2)}
               for r in raw["by_source"]]
    sources.sort(key=lambda r: (r["model"], r["stage"], -r["conversions"], r["source"]))
    return {"totals": totals, "by_step": steps, "by_source": sources}


# -- deliverability -----------------------------------------------------------------------
def deliverability_report(rows: list[dict[str, Any]], status: dict[str, dict[str, Any]]
                          ) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        sent, delivered = int(r["sent"]), int(r["delivered"])
        item = {"campaign": r["campaign"], "sent": sent, "delivered": delivered,
                "bounced": int(r["bounced"]), "spam_reports": int(r["spam_reports"]),
                "unsubscribes": int(r["unsubscribes"]),
                "bounce_rate": ratio(int(r["bounced"]), sent),
                "spam_rate": ratio(int(r["spam_reports"]), delivered or sent, 5),
                "unsubscribe_rate": ratio(int(r["unsubscribes"]), sent)}
        st = status.get(r["campaign"])
        item["status"] = st["status"] if st else "active"
        item["over_limit"] = over_limit(item)
        out.append(item)
    return out


def over_limit(item: dict[str, Any]) -> str | None:
    """Why the guard pauses this campaign (None: it does not). Pure."""
    if item["sent"] < GUARD_MIN_SENT:
        return None
    if item["spam_rate"] is not None and item["spam_rate"] > SPAM_LIMIT:
        return (f"spam-report rate {item['spam_rate']:.2%} > {SPAM_LIMIT:.1%} "
                f"({item['spam_reports']} of {item['delivered'] or item['sent']})")
    if item["bounce_rate"] is not None and item["bounce_rate"] > BOUNCE_LIMIT:
        return (f"hard-bounce rate {item['bounce_rate']:.2%} > {BOUNCE_LIMIT:.0%} "
                f"({item['bounced']} of {item['sent']})")
    return None


# -- the whole set, for the CLI, artifacts and the HTML page --------------------------------
def build(queries: ResultsQueries, report: str, w: Window, *, credit_days: float = CREDIT_DAYS,
          metric: str = "click", by: str = "source", touch: str = "first",
          lookback_days: float = LOOKBACK_DAYS, half_life_days: float = HALF_LIFE_DAYS,
          days: float = GUARD_DAYS, now: datetime | None = None) -> dict[str, Any]:
    """One report as a JSON-able dict: {report, filters, definitions, rows...}."""
    filters = {"from": w.start.isoformat() if w.start else None,
               "to": w.end.isoformat() if w.end else None, "campaign": w.campaign}
    out: dict[str, Any] = {"report": report, "filters": filters,
                           "definitions": DEFINITIONS.get(report, {})}
    if report in ("steps", "ab"):
        steps = steps_report(queries.step_rows(w, credit_days))
        filters["credit_days"] = credit_days
        if report == "steps":
            out["rows"] = steps
        else:
            filters["metric"] = metric
            out["tests"] = ab_report(steps, metric)
    elif report == "sources":
        filters.update(by=by, touch=touch)
        out["rows"] = sources_report(queries.source_rows(w, by, touch))
    elif report == "attribution":
        filters.update(lookback_days=lookback_days, half_life_days=half_life_days)
        out.update(attribution_report(queries.attribution_rows(w, lookback_days,
                                                       half_life_days)))
    elif report == "deliverability":
        end = w.end or now or datetime.now(UTC)
        filters.update(days=days, to=end.isoformat())
        status = {r["campaign"]: r for r in queries.campaign_statuses()}
        out["rows"] = deliverability_report(
            queries.deliverability_rows(end, days, w.campaign), status)
        out["paused"] = [r for r in status.values() if r["status"] == "paused"]
    else:
        raise ValueError(f"unknown report {report!r}")
    return out
