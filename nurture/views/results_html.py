"""`nurture report html`: every results report on one self-contained page — inline CSS and
SVG charts, no scripts, no network — that opens from disk and can be mailed around."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nurture.views.html_kit import esc, page

EXTRA_CSS = """
<style>
.bars{width:100%;max-width:760px;min-width:520px;height:auto;display:block}
.chart{overflow-x:auto;max-width:100%;margin:.4rem 0}
.table-wrap th,.table-wrap td{white-space:nowrap;overflow-wrap:normal}
nav.toc{display:flex;flex-wrap:wrap;gap:.3rem .8rem}
.bars text{font:12px system-ui,sans-serif;fill:#374151}
.bars .v{fill:#1f2937;font-weight:600}
details.defs{font-size:.85rem;color:#4b5563;margin:.3rem 0 .8rem}
details.defs dt{font-weight:600;margin-top:.3rem}
details.defs dd{margin:0 0 0 1rem}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
</style>"""

PALETTE = ("#2f5bea", "#0f9d58", "#f59e0b", "#db2777", "#7c3aed", "#0891b2")


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.2f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _rate(v: Any) -> str:
    return "–" if v is None else f"{v:.1%}"


def table(rows: list[dict[str, Any]], cols: list[str], rates: tuple[str, ...] = ()) -> str:
    if not rows:
        return '<p class="muted">No rows for these filters.</p>'
    head = "".join(f'<th class="{"n" if _numeric(rows, c) else ""}">{esc(c)}</th>'
                   for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            text = _rate(v) if c in rates else _fmt(v)
            cells.append(f'<td class="{"n" if _numeric(rows, c) else ""}">{esc(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _numeric(rows: list[dict[str, Any]], c: str) -> bool:
    return any(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
               for r in rows)


def bar_chart(items: list[tuple[str, float]], title: str, as_rate: bool = False,
              color: str = PALETTE[0]) -> str:
    """A horizontal bar chart as inline SVG (scales to the page width)."""
    if not items:
        return ""
    width, label_w, row_h = 760, 250, 22
    top = max((v for _, v in items), default=0) or 1
    height = row_h * len(items) + 30
    parts = [f'<svg class="bars" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{esc(title)}"><title>{esc(title)}</title>'
             f'<text x="0" y="14" style="font-weight:600">{esc(title)}</text>']
    for i, (label, v) in enumerate(items):
        y = 24 + i * row_h
        w = max(1.0, (width - label_w - 80) * (v / top)) if v else 0
        shown = f"{v:.1%}" if as_rate else (
            f"{v:,.0f}" if v >= 10 or float(v).is_integer() else f"{v:.2f}")
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{esc(label[:38])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 7}" '
            f'fill="{color}" rx="2"/>'
            f'<text class="v" x="{label_w + w + 6:.1f}" y="{y + 14}">{esc(shown)}</text>')
    parts.append("</svg>")
    return '<div class="chart">' + "".join(parts) + "</div>"


def _defs(rep: dict[str, Any]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>"
                    for k, v in rep["definitions"].items())
    return f'<details class="defs"><summary>What these figures mean</summary><dl>{items}</dl>' \
           "</details>"


def _section(anchor: str, title: str, rep: dict[str, Any], inner: str) -> str:
    f = ", ".join(f"{k} {v}" for k, v in rep["filters"].items() if v is not None)
    return (f'<section id="{anchor}"><h2>{esc(title)}</h2>'
            f'<p class="muted">{esc(f)}</p>{_defs(rep)}{inner}</section>')


def render_html(reps: dict[str, dict[str, Any]], generated_at: datetime) -> str:
    """The results page: a table of contents, then one section per report."""
    out = [_toc(generated_at), _steps_section(reps["steps"]), _ab_section(reps["ab"]),
           _sources_section(reps["sources"]), _cohorts_section(reps["cohorts"]),
           _attribution_section(reps["attribution"]),
           _deliverability_section(reps["deliverability"])]
    return page("nurture results", "".join(out), head=EXTRA_CSS)


def _toc(generated_at: datetime) -> str:
    return ('<nav class="toc card"><a href="#steps">Steps</a><a href="#ab">A/B tests</a>'
            '<a href="#sources">Sources &amp; ROI</a><a href="#cohorts">Cohorts</a>'
            '<a href="#attribution">Attribution</a><a href="#deliverability">Deliverability'
            f'</a><span class="muted">generated {generated_at:%Y-%m-%d %H:%M} UTC</span></nav>')


_STEP_COLUMNS = ["campaign", "track", "step", "variant", "sent", "delivered", "opens", "clicks",
                 "open_rate", "click_rate", "click_to_open", "machine_opens_only",
                 "scanner_clicks_only", "unsubscribes", "bounced", "spam_reports", "mql", "sal",
                 "opportunity", "customer"]


def _steps_section(steps: dict[str, Any]) -> str:
    rows = steps["rows"]
    label = [(f"{r['step']}{' / ' + r['variant'] if r['variant'] else ''}", r) for r in rows]
    charts = (bar_chart([(n, r["click_rate"] or 0.0) for n, r in label],
                        "Human click rate per send, by step", True)
              + bar_chart([(n, float(r["mql"])) for n, r in label],
                          "MQLs within the credit window after the send", color=PALETTE[1]))
    return _section("steps", "Step and variant performance", steps, charts + table(
        rows, _STEP_COLUMNS, ("open_rate", "click_rate", "click_to_open")))


def _ab_section(ab: dict[str, Any]) -> str:
    parts = [_ab_card(test) for test in ab["tests"]]
    return _section("ab", "A/B tests", ab, "".join(parts)
                    or '<p class="muted">No step with two variants sent yet.</p>')


def _ab_card(test: dict[str, Any]) -> str:
    warn = ('<span class="warn">minimum sample not reached — do not decide yet</span>'
            if test["min_sample_warning"] else "")
    return (
        f'<div class="card"><h3>{esc(test["campaign"])} / {esc(test["step"])}</h3>'
        f'<p><b>{esc(test["verdict"])}</b> {warn}<br><span class="muted">'
        f'{esc(test["test"])}; metric: {esc(test["metric"])} per send</span></p>'
        + bar_chart([(v["variant"], v["rate"] or 0.0) for v in test["variants"]],
                    f"{test['metric']} rate by variant", True, PALETTE[2])
        + table([{**v, "rate_ci": _ci(v.get("rate_ci")),
                  "difference_ci": _ci(v.get("difference_ci"))}
                 for v in test["variants"]],
                ["variant", "sent", "successes", "rate", "rate_ci", "difference",
                 "difference_ci", "z", "p_value", "significant"], ("rate", "difference"))
        + "</div>")


def _sources_section(sources: dict[str, Any]) -> str:
    rows = sources["rows"]
    return _section("sources", "Sources and ROI (first touch)", sources,
                    bar_chart([(r["group"], float(r["revenue"])) for r in rows],
                              "Revenue (won deal amounts) by original source",
                              color=PALETTE[1])
                    + bar_chart([(r["group"], r["mql_rate"] or 0.0) for r in rows],
                                "Lead → MQL rate by original source", True)
                    + table(rows, ["group", "leads", "mql", "sal", "sql", "opportunity",
                                   "won", "mql_rate", "pipeline", "revenue", "cost",
                                   "cost_per_lead", "cost_per_mql",
                                   "cost_per_opportunity", "roi", "median_days_to_mql",
                                   "median_days_to_opportunity", "median_days_to_won"],
                            ("mql_rate",)))


def _cohorts_section(cohorts: dict[str, Any]) -> str:
    rows = sorted(cohorts["rows"], key=lambda r: r["group"])
    return _section("cohorts", "Funnel by cohort (lead created month)", cohorts,
                    bar_chart([(r["group"], r["mql_rate"] or 0.0) for r in rows],
                              "Lead → MQL rate by created month", True, PALETTE[4])
                    + table(rows, ["group", "leads", "mql", "sal", "sql", "opportunity",
                                   "won", "mql_rate", "revenue", "median_days_to_mql"],
                            ("mql_rate",)))


def _attribution_section(attribution: dict[str, Any]) -> str:
    totals = [{"stage": s, **v} for s, v in attribution["totals"].items()]
    won = [r for r in attribution["by_step"] if r["stage"] == "mql"]
    return _section("attribution", "Attribution", attribution,
                    table(totals, ["stage", "conversions", "with_touch", "unattributed",
                                   "amount"])
                    + bar_chart([(f"{r['campaign']}/{r['step']}", r["time_decay"])
                                 for r in won], "MQL credit by step (time decay)",
                                color=PALETTE[3])
                    + table(attribution["by_step"],
                            ["stage", "campaign", "step", "first", "last", "linear",
                             "time_decay", "first_amount", "last_amount",
                             "linear_amount", "time_decay_amount"])
                    + "<h3>By source</h3>"
                    + table(attribution["by_source"],
                            ["model", "stage", "source", "conversions", "amount"]))


def _deliverability_section(deliv: dict[str, Any]) -> str:
    rows = deliv["rows"]
    paused = "".join(f'<p><span class="err">paused</span> {esc(p["campaign"])}: '
                     f'{esc(p.get("reason") or "")}</p>' for p in deliv["paused"])
    return _section("deliverability", "Deliverability", deliv, paused
                    + bar_chart([(r["campaign"], r["spam_rate"] or 0.0) for r in rows],
                                "Spam-report rate (limit 0.3 %)", True, PALETTE[3])
                    + bar_chart([(r["campaign"], r["bounce_rate"] or 0.0) for r in rows],
                                "Hard-bounce rate (limit 5 %)", True, PALETTE[2])
                    + table(rows, ["campaign", "status", "sent", "delivered", "bounced",
                                   "spam_reports", "unsubscribes", "bounce_rate",
                                   "spam_rate", "unsubscribe_rate", "over_limit"],
                            ("bounce_rate", "spam_rate", "unsubscribe_rate")))


def _ci(ci: list[float] | None) -> str | None:
    return None if not ci else f"{ci[0]:+.1%} … {ci[1]:+.1%}"
