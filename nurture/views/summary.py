"""Run summaries as tables: a narrow headline table and markdown for Prefect artifacts (read
in a browser at 1280 px). The terminal table itself is drawn by the CLI
(nurture/entrypoints/cli/tables.py)."""

from __future__ import annotations

from typing import Any


def _skips(skipped: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(skipped.items(), key=lambda kv: -kv[1])) or "-"


def _stages(stages: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in stages.items()) or "-"


def summary_table_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per campaign plus a total, every column: the terminal table (drawn by the
    CLI's `print_summary`)."""
    rows = []
    for name, c in summary["campaigns"].items():
        rows.append({"campaign": name, "scored": c["scored"],
                     "by_buying_stage": _stages(c["by_buying_stage"]), "due": c["due"],
                     "sent": c["sent"], "failed": c["failed"],
                     "skipped": _skips(c["skipped"]), "mqls": c["mqls"],
                     "recycled": c["recycled"]})
    rows.append({"campaign": "TOTAL", "scored": summary["leads_scored"],
                 "by_buying_stage": _stages(summary["by_buying_stage"]),
                 "due": summary["touches_planned"], "sent": summary["touches_sent"],
                 "failed": summary["touches_failed"], "skipped": _skips(summary["skipped"]),
                 "mqls": summary["mqls"], "recycled": summary["recycled"]})
    return rows


def _human(key: str) -> str:
    """`not_in_window` -> `not in window`: reason codes read as words in the UI."""
    return key.replace("_", " ")


def _retrying(c: dict[str, Any]) -> str:
    return f"{c.get('retrying', 0)} / {c.get('in_doubt', 0)}"


def headline_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The table an operator reads first (the Prefect table artifact): one short row per
    campaign plus the total, seven narrow columns, human headers, no empty cells.
    `SLA expired` MQLs came back recycled: they are also in `Recycled`."""
    sla = summary.get("sla_expired_by_campaign", {})

    def row(name: str, c: dict[str, Any], expired: int) -> dict[str, Any]:
        return {"Campaign": name, "Sent": c["sent"], "Failed": c["failed"],
                "Retrying / in doubt": _retrying(c), "MQLs": c["mqls"],
                "Recycled": c["recycled"], "SLA expired": expired}

    rows = [row(name, c, sla.get(name, 0)) for name, c in summary["campaigns"].items()]
    total = {"sent": summary["touches_sent"], "failed": summary["touches_failed"],
             "retrying": summary.get("touches_retrying", 0),
             "in_doubt": summary.get("touches_in_doubt", 0), "mqls": summary["mqls"],
             "recycled": summary["recycled"]}
    rows.append(row("Total", total, summary.get("sla_expired", 0)))
    return rows


def _md_table(head: list[str], rows: list[list[Any]], left: int = 1) -> list[str]:
    """A markdown table; the first `left` columns are text, the others right-aligned."""
    align = ["---" if i < left else "---:" for i in range(len(head))]
    return (["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows] + [""])


def summary_markdown(summary: dict[str, Any]) -> str:
    """The run report (Prefect markdown artifact): the headline table first, then narrow
    detail tables — each fits a 1280 px browser window without a scrollbar."""
    dry = summary["dry_run"]
    head = headline_rows(summary)
    lines = [f"# Nurture cycle {summary['as_of'][:16].replace('T', ' ')} UTC"
             + (" — DRY RUN" if dry else ""), ""]
    if dry:
        lines += ["> **Dry run:** decided and counted, nothing was written or sent. "
                  "The live run's report is under the key `nurture-cycle-report`.", ""]
    lines += [f"**{summary['touches_sent']:,}** touches sent, "
              f"**{summary['touches_failed']:,}** failed, **{summary['mqls']:,}** MQLs "
              f"handed to sales, **{summary['recycled']:,}** recycled "
              f"({summary.get('sla_expired', 0):,} of them after the MQL SLA expired).", ""]
    lines += _md_table(list(head[0]), [list(r.values()) for r in head])
    lines += ["## Leads looked at, per campaign", ""]
    lines += _md_table(["Campaign", "Scored", "Touches due", "Skipped"],
                       [[name, c["scored"], c["due"], sum(c["skipped"].values())]
                        for name, c in summary["campaigns"].items()]
                       + [["Total", summary["leads_scored"], summary["touches_planned"],
                           sum(summary["skipped"].values())]])
    lines += ["## Why leads got no touch today", ""]
    skipped = sorted(summary["skipped"].items(), key=lambda kv: (-kv[1], kv[0]))
    lines += (_md_table(["Reason", "Leads"], [[_human(k), v] for k, v in skipped])
              if skipped else ["None skipped.", ""])
    lines += ["## Leads by buying stage", ""]
    stages = summary["by_buying_stage"]
    lines += (_md_table(["Buying stage", "Leads"], [[_human(k), v] for k, v in stages.items()])
              if stages else ["No leads scored.", ""])
    lines += ["Retrying: a send failed for a passing reason (429, 5xx, network) and is tried "
              "again by a later run. In doubt: the provider may have it; its events settle "
              "it (`nurture touches list`).", ""]
    return "\n".join(lines)
