"""The funnel report as markdown (the daily cycle's Prefect artifact), and the small formats
the terminal table shares with it. The numbers come from `nurture.core.funnel`."""

from __future__ import annotations

from typing import Any


def format_pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f} %"


def format_days(days: float | None) -> str:
    return "-" if days is None else f"{days:.1f}"


def report_time(report: dict[str, Any]) -> str:
    return report["as_of"][:16].replace("T", " ") + " UTC"


def headline(report: dict[str, Any]) -> str:
    m = report["mql"]
    return (f"{report['leads_total']:,} leads; {m['handed_off']:,} MQLs handed to sales "
            f"(acceptance {format_pct(m['acceptance_rate'])}, SLA compliance "
            f"{format_pct(m['sla_compliance'])}); {report['recycled']['count']:,} recycled.")


def _md_table(head: list[str], rows: list[list[Any]], right: int = 1) -> list[str]:
    """A markdown table; columns from index `right` on are right-aligned (numbers)."""
    align = ["---" if i < right else "---:" for i in range(len(head))]
    return (["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows] + [""])


def _md_counts(title: str, label: str, counts: dict[str, int]) -> list[str]:
    lines = [f"## {title}", ""]
    if not counts:
        return lines + ["None.", ""]
    return lines + _md_table([label, "Count"], [[k, f"{v:,}"] for k, v in counts.items()])


def funnel_markdown(report: dict[str, Any]) -> str:
    """The report as narrow markdown tables (a Prefect markdown artifact read in a browser at
    1280 px): at most five short columns each, human headers.

    The conversion table says how many entered the next stage *another way* (skipping the
    earlier stage, or created in it): a new lead that jumps straight to MQL is counted in
    neither number of "nurturing → mql" — without that column a 0 % rate there sat beside
    MQLs as if the funnel were broken."""
    m = report["mql"]
    reached = report["reached"]
    lines = [f"# Lead funnel as of {report_time(report)}", "", headline(report), "",
             "## Stages", ""]
    lines += _md_table(
        ["Stage", "Leads now", "Ever reached", "Median days in stage"],
        [[s, f"{n:,}", f"{reached.get(s, 0):,}", format_days(report["median_days_in_stage"].get(s))]
         for s, n in report["leads_by_stage"].items()])
    lines += ["## Conversion", ""]
    lines += _md_table(
        ["From → to", "Reached from", "Then reached to", "Rate", "Reached to another way"],
        [[f"{c['from']} → {c['to']}", f"{c['reached_from']:,}", f"{c['reached_to']:,}",
          format_pct(c["rate"]), f"{reached.get(c['to'], 0) - c['reached_to']:,}"]
         for c in report["conversion"]])
    lines += ["Rate: of the leads that entered the first stage, the share that later entered "
              "the second. *Reached to another way*: leads that entered the second stage "
              "without passing through the first (e.g. new → mql on their first cycle).", ""]
    lines += ["## MQL handoffs", ""]
    lines += _md_table(["Handoffs", "Count"], [
        ["Handed off", f"{m['handed_off']:,}"], ["Accepted", f"{m['accepted']:,}"],
        ["Rejected", f"{m['rejected']:,}"], ["Expired (SLA)", f"{m['expired']:,}"],
        ["Pending", f"{m['pending']:,}"], ["Pending and overdue", f"{m['overdue']:,}"]])
    lines += _md_table(["Rate", "Value"], [
        ["Acceptance rate", format_pct(m["acceptance_rate"])],
        ["SLA compliance", format_pct(m["sla_compliance"])],
        ["SLA response rate", format_pct(m["sla_response_rate"])]])
    lines += ["SLA compliance: accepted before the SLA deadline / handoffs resolved or past "
              "their deadline; the response rate also counts timely rejects.", ""]
    lines += _md_counts("Sales rejects by reason", "Reason", report["rejects_by_reason"])
    lines += _md_counts("MQLs by lead source", "Source", report["mqls_by_source"])
    lines += _md_counts("Recycled by reason", "Reason", report["recycled"]["by_reason"])
    return "\n".join(lines)
