"""Results in the Prefect UI: after a live cycle, the deliverability guard judges the
campaigns (pausing any over the limits and emitting `nurture.campaign.paused`), then the
steps, A/B, sources and deliverability reports are published as table and markdown
artifacts. Called once at the end of a live (non-dry) daily cycle:

    from nurture.flows.artifacts import publish_result_artifacts
    publish_result_artifacts(app, when)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from nurture.core.reporting import Window
from nurture.wiring import deliverability_guard as guard
from nurture.wiring import results_report


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def results_markdown(steps: dict, ab: dict, deliv: dict, paused_now: list[dict]) -> str:
    lines = [f"# Results ({steps['filters']['from'][:10]} → {steps['filters']['to'][:10]})", ""]
    if paused_now:
        lines += ["## Paused now by the deliverability guard", ""]
        lines += [f"- **{p['campaign']}**: {p['reason']} — resume with "
                  f"`nurture campaign resume {p['campaign']}`" for p in paused_now]
        lines.append("")
    lines += ["## Steps", "", "| campaign | step | variant | sent | open | click | CTOR | "
              "MQLs ≤14 d |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in steps["rows"]:
        lines.append(f"| {r['campaign']} | {r['step']} | {r['variant'] or ''} | {r['sent']} | "
                     f"{_pct(r['open_rate'])} | {_pct(r['click_rate'])} | "
                     f"{_pct(r['click_to_open'])} | {r['mql']} |")
    lines += ["", "## A/B tests (two-proportion z-test, 95% Newcombe CI)", ""]
    for test in ab["tests"] or []:
        rates = ", ".join(f"{v['variant']} {_pct(v['rate'])} (n={v['sent']})"
                          for v in test["variants"])
        lines.append(f"- {test['campaign']}/{test['step']}: {rates} — **{test['verdict']}**")
    if not ab["tests"]:
        lines.append("- no multi-variant step sent in the window")
    lines += ["", "## Deliverability (7 days)", ""]
    for r in deliv["rows"]:
        lines.append(f"- {r['campaign']} ({r['status']}): bounce {_pct(r['bounce_rate'])}, "
                     f"spam {_pct(r['spam_rate'])}, unsubscribe {_pct(r['unsubscribe_rate'])}"
                     f" over {r['sent']} sends")
    lines += ["", "Definitions: `nurture report steps|ab|sources|attribution|deliverability` "
              "(each prints what its figures mean)."]
    return "\n".join(lines) + "\n"


def publish_result_artifacts(app, as_of: datetime, days: float = 28.0) -> dict[str, Any]:
    """Guard, then publish the last `days` of results as Prefect artifacts."""
    paused_now = guard(app.engine, as_of)
    w = Window(as_of - timedelta(days=days), as_of + timedelta(seconds=1))
    steps = results_report(app.engine, "steps", w)
    ab = results_report(app.engine, "ab", w)
    sources = results_report(app.engine, "sources", Window(as_of - timedelta(days=90),
                                                  as_of + timedelta(seconds=1)))
    deliv = results_report(app.engine, "deliverability", Window(end=as_of + timedelta(seconds=1)))
    create_table_artifact(steps["rows"], key="nurture-results-steps",
                          description=f"Step and variant performance, {days:g} days to "
                                      f"{as_of.date()}")
    create_table_artifact(sources["rows"], key="nurture-results-sources",
                          description="Leads created in the last 90 days by original source")
    create_table_artifact(deliv["rows"], key="nurture-results-deliverability",
                          description="Bounce, spam-report and unsubscribe rates, 7 days")
    create_markdown_artifact(results_markdown(steps, ab, deliv, paused_now),
                             key="nurture-results", description=f"Results {as_of.date()}")
    return {"paused_now": paused_now, "steps": len(steps["rows"]),
            "ab_tests": len(ab["tests"])}
