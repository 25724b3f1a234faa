"""Rendering cost per message: subject + HTML + plain-text part, over every shipped step.

Two ways, timed interleaved in the same process, in CPU time of this process
(`time.process_time`, so time spent waiting for a shared CPU is not counted), best of
several repeats:

  per-message  the text part by `html_to_text` on each rendered HTML (the way before #13:
               `Renderer(derive_text=False)`)
  derived      the text part from the text template derived once per template

It also checks that both give identical emails for every message rendered. Run against an
older checkout (`PYTHONPATH=/path/to/checkout`) where `Renderer` has no `derive_text`, only the
per-message way is timed: that is the "before" figure.

    .venv/bin/python benchmarks/render.py --messages 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNSUB = "https://nurture.acme.example/unsubscribe/"

FIRST = ["Jordan", "Zoë", "Ana-María", "O'Neil", "李", "Tom & Jerry", "", None, "Chris"]
COMPANY = ["Example Corp", "Smith & Sons <UK>", "Café \"Noir\"", None, "Initech", "A\u00a0B"]
TITLE = ["Director of Marketing", "VP, Sales", None, "Head of <Growth>", "CTO"]


def leads(n: int) -> list[dict]:
    from nurture.core.rendering import sample_lead
    out = []
    for i in range(n):
        out.append(sample_lead() | {
            "email": f"lead{i}@example.com", "first_name": FIRST[i % len(FIRST)],
            "company": COMPANY[i % len(COMPANY)], "title": TITLE[i % len(TITLE)],
            "industry": ["software", "retail", None][i % 3], "company_size": 10 + i % 5000})
    return out


def jobs(config) -> list[tuple]:
    return [(c, t, s, v) for c in config.campaigns for t in c.tracks for s in t.steps
            for v in [x.id for x in s.variants or []] or [None]]


def run(renderer, work: list[tuple], data: list[dict]) -> tuple[float, list]:
    """Seconds to render every message once (after one warm-up pass over the steps)."""
    for job in work:
        renderer.render(*job, data[0], UNSUB)
    out = []
    start = time.process_time()
    for i, lead in enumerate(data):
        out.append(renderer.render(*work[i % len(work)], lead, f"{UNSUB}{i}"))
    return time.process_time() - start, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--messages", type=int, default=20000, help="messages per repeat")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per way (best kept)")
    ap.add_argument("--templates", type=Path, default=ROOT / "templates")
    ap.add_argument("--campaigns", type=Path, default=ROOT / "campaigns")
    ap.add_argument("--json", action="store_true", help="one JSON line on stdout")
    args = ap.parse_args(argv)

    from nurture.core.config import load_config
    from nurture.core.rendering import Renderer
    work, data = jobs(load_config(args.campaigns)), leads(args.messages)
    try:
        ways = {"per-message": Renderer(args.templates, derive_text=False),
                "derived": Renderer(args.templates)}
    except TypeError:  # an older checkout: only the way it has
        ways = {"per-message": Renderer(args.templates)}
    times: dict[str, list[float]] = {w: [] for w in ways}
    outputs: dict[str, list] = {}
    for _ in range(args.repeats):
        for way, renderer in ways.items():
            seconds, outputs[way] = run(renderer, work, data)
            times[way].append(seconds / len(data) * 1e6)
    result = {"messages": len(data), "steps": len(work), "repeats": args.repeats}
    for way, us in times.items():
        result[way] = {"best_us": round(min(us), 1), "median_us": round(statistics.median(us), 1)}
    if len(ways) == 2:
        result["identical"] = outputs["per-message"] == outputs["derived"]
        result["text_fallbacks"] = ways["derived"].text_fallbacks
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{len(data)} messages over {len(work)} steps, best/median of {args.repeats}:",
              file=sys.stderr)
        for way in times:
            print(f"  {way:<12} {result[way]['best_us']:>7.1f} µs/message "
                  f"(median {result[way]['median_us']:.1f})", file=sys.stderr)
        for key in ("identical", "text_fallbacks"):
            if key in result:
                print(f"  {key}: {result[key]}", file=sys.stderr)
    return 0 if result.get("identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
