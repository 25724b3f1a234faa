"""Seeded, deterministic synthetic leads and activities for `nurture demo` and the benchmarks.

Stdlib only and lazy: rows are produced one at a time from `random.Random(seed)` streams, so a
million leads and their activities need little memory. The same seed gives the same rows, and
the first k rows of a run do not depend on how many rows were asked for.

Every address is under the reserved `.example` TLD (RFC 2606), so nothing generated here can
reach a real mailbox; free-mail addresses use `gmail.example`, `yahoo.example`, ... which the
`@(gmail|yahoo|hotmail|outlook)\\.` fit rule still matches.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nurture.core.domain import LEAD_FIELDS
from nurture.devtools.demo_tables import (
    BLOG,
    COUNTRY_TABLE,
    EVALUATION_ASSETS,
    FIRST_NAMES,
    FORMS,
    FREE_MAIL,
    FREE_MAIL_SHARE,
    INDUSTRIES,
    INDUSTRY_SUFFIXES,
    LAST_NAMES,
    LOCAL_HOURS,
    NAME_HEADS,
    NAME_TAILS,
    PERSONAS,
    PLANS_LARGE,
    PLANS_MID,
    PLANS_SMALL,
    PRODUCT_PAGES,
    RESEARCH_ASSETS,
    SITE,
    SIZE_BUCKETS,
    SOURCES,
    TITLES,
    TZ_TABLES,
    UTMS,
    WEBINARS,
    slug,
)

DEFAULT_START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
LEAD_HISTORY_DAYS = 90  # created_at falls within this many days before `start`
ACTIVITY_HISTORY_DAYS = 45  # activities start this many days before `start`
COMPANY_POOL = 4000

# the lead CSV's columns: the standard fields plus the demo's one custom attribute
LEAD_COLUMNS = (*LEAD_FIELDS, "plan_interest")

_DAY = 86400


@cache
def _time_of_day() -> tuple[str, ...]:
    """'HH:MM:SSZ' for every second of the day (built once, ~6 MB)."""
    return tuple(f"{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60)
                 for s in range(60))


class _Clock:
    """Formats epoch seconds as ISO 8601 UTC ('...Z') fast, via per-day and per-second tables."""

    def __init__(self, first: datetime, last: datetime) -> None:
        day0 = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.base = int(day0.timestamp())
        days = (last - day0).days + 2
        self.dates = tuple((day0 + timedelta(days=d)).strftime("%Y-%m-%dT") for d in range(days))
        self.weekdays = tuple((day0 + timedelta(days=d)).weekday() for d in range(days))
        self.tod = _time_of_day()

    def iso(self, ts: int) -> str:
        d, s = divmod(ts - self.base, _DAY)
        return self.dates[d] + self.tod[s]


def _utc(start: datetime | None) -> datetime:
    if start is None:
        return DEFAULT_START
    return start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)


def _companies(rng: random.Random) -> list[tuple[str, str, str, int, str]]:
    """A fixed pool of (name, domain, industry, size, country) with unique names."""
    seen: set[str] = set()
    pool: list[tuple[str, str, str, int, str]] = []
    r = rng.random
    while len(pool) < COMPANY_POOL:
        industry = INDUSTRIES[int(r() * len(INDUSTRIES))]
        base = NAME_HEADS[int(r() * len(NAME_HEADS))] + NAME_TAILS[int(r() * len(NAME_TAILS))]
        form = r()
        if form < 0.3:
            name = base
        elif form < 0.85:
            suffixes = INDUSTRY_SUFFIXES[industry]
            name = f"{base} {suffixes[int(r() * len(suffixes))]}"
        else:
            name = f"{base} {NAME_HEADS[int(r() * len(NAME_HEADS))]}"
        if name in seen:
            if len(seen) > COMPANY_POOL * 3 // 4:  # the name space is getting crowded
                name = f"{name} {len(pool)}"
            else:
                continue
        seen.add(name)
        lo, hi = SIZE_BUCKETS[int(r() * len(SIZE_BUCKETS))]
        size = int(lo + (hi - lo + 1) * r() ** 1.6)  # skew towards the bottom of the bucket
        country = COUNTRY_TABLE[int(r() * len(COUNTRY_TABLE))]
        pool.append((name, slug(name) + ".example", industry, size, country))
    return pool


def generate_leads(n: int, seed: int = 7, start: datetime | None = None
                   ) -> Iterator[dict[str, Any]]:
    """Lead rows shaped like the lead CSV, plus the custom attribute `plan_interest`.

    Emails are unique (`first.last+<index>@domain`); `created_at` is ISO 8601 UTC within the
    90 days before `start` (default `DEFAULT_START`).
    """
    start = _utc(start)
    rng = random.Random(f"nurture-demo-leads:{seed}")
    r = rng.random
    companies = _companies(rng)
    n_companies = len(companies)
    firsts = tuple((name, slug(name)) for name in FIRST_NAMES)
    lasts = tuple((name, slug(name)) for name in LAST_NAMES)
    n_first, n_last = len(firsts), len(lasts)
    n_titles, n_countries, n_sources = len(TITLES), len(COUNTRY_TABLE), len(SOURCES)
    horizon = LEAD_HISTORY_DAYS * _DAY
    end_ts = int(start.timestamp())
    clock = _Clock(start - timedelta(days=LEAD_HISTORY_DAYS), start)
    iso = clock.iso
    for i in range(n):
        first, first_slug = firsts[int(r() * n_first)]
        last, last_slug = lasts[int(r() * n_last)]
        company, domain, industry, size, country = companies[int(r() * n_companies)]
        if r() < FREE_MAIL_SHARE:
            domain = FREE_MAIL[int(r() * 4)]
        if r() < 0.2:  # remote staff and subsidiaries: not every lead sits at headquarters
            country = COUNTRY_TABLE[int(r() * n_countries)]
        zones = TZ_TABLES[country]
        source = SOURCES[int(r() * n_sources)]
        utms = UTMS[source]
        utm_source, utm_medium, utm_campaign = utms[int(r() * len(utms))]
        plans = PLANS_LARGE if size >= 1000 else PLANS_MID if size >= 200 else PLANS_SMALL
        created = end_ts - 1 - int(r() * horizon)
        yield {
            "email": f"{first_slug}.{last_slug}+{i}@{domain}",
            "first_name": first,
            "last_name": last,
            "company": company,
            "title": TITLES[int(r() * n_titles)],
            "industry": industry if r() >= 0.03 else None,
            "company_size": size,
            "country": country,
            "timezone": zones[int(r() * len(zones))],
            "source": source,
            "utm_source": utm_source,
            "utm_medium": utm_medium,
            "utm_campaign": utm_campaign,
            "created_at": iso(created),
            "plan_interest": plans[int(r() * len(plans))],
        }


@cache
def _offset_seconds(tz: str | None, when: datetime) -> int:
    """The zone's UTC offset at `when` (0 when unknown), to put activity in local office hours."""
    if not tz:
        return 0
    try:
        offset = ZoneInfo(tz).utcoffset(when)
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    return int(offset.total_seconds()) if offset else 0


def _created_ts(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(_utc(value).timestamp())
    if isinstance(value, str) and value:
        try:
            return int(_utc(datetime.fromisoformat(value.replace("Z", "+00:00"))).timestamp())
        except ValueError:
            return None
    return None


class _Draw:
    """One lead's activity draw: the shared random stream, the lead's window [lo, lo + span]
    and its office hours. Every draw goes through the one stream, in a fixed order, so the
    same seed gives the same activities."""

    def __init__(self, r: Callable[[], float], clock: _Clock, offset: int, lo: int,
                 span: int) -> None:
        self.r, self.clock, self.offset, self.lo, self.span = r, clock, offset, lo, span
        self.out: list[tuple[int, str, dict[str, Any]]] = []

    def add(self, ts: int, typ: str, props: dict[str, Any]) -> None:
        self.out.append((ts, typ, props))

    def session(self, at: float) -> int:
        """A session start in the lead's office hours on the day around `at`; epoch s."""
        r, weekdays = self.r, self.clock.weekdays
        day = max(int((at - self.clock.base + self.offset) // _DAY), 0)
        if weekdays[min(day, len(weekdays) - 1)] >= 5 and r() < 0.75:
            day += 2 if weekdays[min(day, len(weekdays) - 1)] == 5 else 1
        local = LOCAL_HOURS[int(r() * len(LOCAL_HOURS))] * 3600 + int(r() * 3600)
        return self.clock.base + day * _DAY + local - self.offset

    def anytime(self, share: float = 1.0) -> int:
        """A session in the first `share` of the window."""
        return self.session(self.lo + self.r() * self.span * share)

    def pick(self, options: Sequence[str]) -> str:
        return options[int(self.r() * len(options))]

    def browse(self, t: int, pages: int, urls: Sequence[str], gap: int, jitter: int) -> int:
        """`pages` page views from `t`, `gap` + up to `jitter` seconds apart; the time after."""
        for _ in range(pages):
            self.add(t, "page_view", {"url": self.pick(urls)})
            t += gap + int(self.r() * jitter)
        return t

    def webinar(self, t: int) -> None:
        r = self.r
        self.add(t, "webinar_attended",
                 {"webinar": WEBINARS[int(r() * 3)], "minutes": 10 + int(r() * 50)})

    def download(self, t: int, assets: Sequence[str] = RESEARCH_ASSETS) -> None:
        self.add(t, "content_download", {"asset": self.pick(assets)})


def _dormant(d: _Draw) -> None:
    """0-2 early activities, then silence."""
    r = d.r
    for _ in range(int(r() * 2.9)):  # 0, 1 or 2
        t = d.session(d.lo + r() * min(d.span, 10 * _DAY))
        x = r()
        if x < 0.6:
            d.add(t, "page_view", {"url": d.pick(BLOG)})
        elif x < 0.8:
            d.add(t, "email_click", {"url": SITE + d.pick(BLOG)})
        else:
            d.download(t)


def _researcher(d: _Draw) -> None:
    """Blog sessions, downloads, the odd webinar or form."""
    r = d.r
    for _ in range(1 + int(r() * 2)):
        t = d.browse(d.anytime(), 1 + int(r() * 3), BLOG, 40, 300)
        if r() < 0.4:
            d.download(t)
        if r() < 0.25:
            d.add(d.anytime(), "email_click", {"url": SITE + d.pick(BLOG)})
    if r() < 0.12:
        d.webinar(d.anytime())
    if r() < 0.1:
        d.add(d.anytime(), "form_submit", {"form": FORMS[int(r() * 4)]})


def _evaluator(d: _Draw) -> None:
    """Early research, then pricing and case studies later in the window."""
    r = d.r
    t = d.browse(d.anytime(0.4), 1 + int(r() * 2), BLOG, 40, 300)  # early research
    if r() < 0.5:
        d.download(t)
    # then, later in the window, comparing vendors over a week or two
    eval_start = d.lo + d.span * (0.4 + 0.5 * r())
    for _ in range(2 + int(r() * 2)):
        t = d.session(eval_start + r() * 12 * _DAY)
        d.add(t, "page_view", {"url": d.pick(PRODUCT_PAGES)})
        d.add(t + 30 + int(r() * 240), "pricing_page_view", {"url": "/pricing"})
    for _ in range(1 + (r() < 0.3)):
        d.download(d.session(eval_start + r() * 12 * _DAY), EVALUATION_ASSETS)
    d.add(d.session(eval_start + r() * 10 * _DAY), "email_click", {"url": f"{SITE}/customers"})
    if r() < 0.2:
        d.add(d.session(eval_start + r() * 12 * _DAY), "form_submit", {"form": "contact-us"})


def _hand_raiser(d: _Draw) -> None:
    """Reads, looks at pricing, asks for a demo."""
    r = d.r
    d.browse(d.anytime(0.5), 2 + int(r() * 2), BLOG, 40, 300)
    if r() < 0.5:
        d.add(d.anytime(), "email_click", {"url": SITE + d.pick(PRODUCT_PAGES)})
    t = d.anytime()
    d.add(t, "pricing_page_view", {"url": "/pricing"})
    if r() < 0.4:
        t += 60 + int(r() * 600)
        d.add(t, "form_submit", {"form": "contact-sales"})
    d.add(t + 60 + int(r() * 900), "demo_request", {"form": "demo-request", "url": "/demo"})


def _noisy(d: _Draw) -> None:
    """Many page views a day (an intern refreshing, a shared login, a crawler)."""
    r = d.r
    for _ in range(1 + int(r() * 3)):
        t = d.browse(d.anytime(), 5 + int(r() * 10), BLOG, 5, 120)
    if r() < 0.5:
        d.download(t)


_PERSONA_DRAWS: dict[str, Callable[[_Draw], None]] = {
    "dormant": _dormant, "researcher": _researcher, "evaluator": _evaluator,
    "hand_raiser": _hand_raiser, "noisy": _noisy}


def generate_activities(leads: Iterable[dict], start: datetime, days: int, seed: int = 7
                        ) -> Iterator[dict[str, Any]]:
    """Activity rows shaped like the activities JSONL, between `start - 45 days` and
    `start + days`, from a behaviour persona drawn per lead.

    Personas: ~40% dormant (0-2 early activities, then silence), ~35% researchers (blog
    sessions, downloads, the odd webinar), ~15% evaluators (pricing and case studies later in
    the window), ~5% hand-raisers (a demo_request), ~5% noisy (page_view storms). Ids are
    `demo-<seed>-<lead index>-<k>`: unique, and stable for the same seed and leads.
    """
    start = _utc(start)
    first = start - timedelta(days=ACTIVITY_HISTORY_DAYS)
    last = start + timedelta(days=max(days, 0))
    clock = _Clock(first, last)
    lo_all, hi_all = int(first.timestamp()), int(last.timestamp())
    r = random.Random(f"nurture-demo-activities:{seed}").random
    for index, lead in enumerate(leads):
        created = _created_ts(lead.get("created_at"))
        lo = lo_all if created is None or created < lo_all else min(created, hi_all)
        d = _Draw(r, clock, _offset_seconds(lead.get("timezone"), start), lo, hi_all - lo)
        persona = PERSONAS[int(r() * len(PERSONAS))]
        if lead.get("source") == "webinar" and r() < 0.7 and created is not None:
            # registered for a webinar: most attended it around when they signed up
            d.webinar(created + 3600 + int(r() * 2 * _DAY))
        _PERSONA_DRAWS[persona](d)
        yield from _rows(d, hi_all, f"demo-{seed}-{index}-", lead["email"])


def _rows(d: _Draw, hi: int, prefix: str, email: str) -> Iterator[dict[str, Any]]:
    """The lead's drawn activities as rows, strays pulled back inside the window."""
    r, clock = d.r, d.clock
    edge = min(d.span, 6 * 3600)  # pull strays back inside the window, near its edge
    for k, (ts, typ, props) in enumerate(d.out):
        if ts < d.lo:
            ts = d.lo + int(r() * edge)
        elif ts > hi:
            ts = hi - int(r() * edge)
        day, sec = divmod(ts - clock.base, _DAY)
        yield {"id": prefix + str(k), "email": email, "type": typ,
               "occurred_at": clock.dates[day] + clock.tod[sec], "properties": props}


def write_leads_csv(path: Path, rows: Iterable[dict]) -> int:
    """Write lead rows as CSV (header = the first row's keys; None as empty); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = iter(rows)
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        first = next(rows, None)
        writer = csv.DictWriter(fh, fieldnames=list(first) if first else list(LEAD_COLUMNS))
        writer.writeheader()
        if first is None:
            return 0
        writer.writerow(first)
        count = 1
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def write_activities_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Write activity rows as JSON Lines; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        write = fh.write
        for row in rows:
            write(dumps(row) + "\n")
            count += 1
    return count


def _written(rows: Iterable[dict], writer: Any, counter: list[int]) -> Iterator[dict]:
    """Each row written to the CSV as it passes by (the header from the first row's keys)."""
    for row in rows:
        if writer.fieldnames is None:
            writer.fieldnames = list(row)
            writer.writeheader()
        writer.writerow(row)
        counter[0] += 1
        yield row


def write_demo_files(leads_path: Path, activities_path: Path, n: int, seed: int = 7,
                     start: datetime | None = None, days: int = 0) -> tuple[int, int]:
    """Write `n` leads (CSV) and their activities (JSONL) in one pass, in constant memory:
    each lead goes to the CSV as it is generated and its activities are drawn right after,
    so nothing holds the whole list. The files are byte for byte what `write_leads_csv` of
    `generate_leads` and `write_activities_jsonl` of `generate_activities` over the same
    leads write. Returns (leads, activities)."""
    leads_path = Path(leads_path)
    leads_path.parent.mkdir(parents=True, exist_ok=True)
    counter = [0]
    with open(leads_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=None)  # type: ignore[arg-type]
        leads = _written(generate_leads(n, seed=seed, start=start), writer, counter)
        acts = write_activities_jsonl(activities_path,
                                      generate_activities(leads, _utc(start), days, seed=seed))
        if writer.fieldnames is None:  # no leads: the header alone, as write_leads_csv
            writer.fieldnames = list(LEAD_COLUMNS)
            writer.writeheader()
    return counter[0], acts


def sample_leads(n: int, share: float, seed: int = 7, start: datetime | None = None
                 ) -> Iterator[dict[str, Any]]:
    """About `share` of the `n` demo leads (the same rows `generate_leads` gives), drawn
    with their own seeded stream: the leads a steady-state day hears from again."""
    pick = random.Random(f"nurture-demo-sample:{seed}:{share}").random
    return (lead for lead in generate_leads(n, seed=seed, start=start) if pick() < share)


def generate_fresh_activities(leads: Iterable[dict], day: datetime, seed: int = 7
                              ) -> Iterator[dict[str, Any]]:
    """One to three activities per lead in the 24 hours from `day` (a steady-state
    day's new engagement); ids `fresh-<seed>-<date>-<n>-<k>` (n: the lead's place in
    `leads`) are unique per day."""
    day = _utc(day)
    r = random.Random(f"nurture-demo-fresh:{seed}:{day.date()}").random
    clock = _Clock(day, day + timedelta(days=1))
    base = int(day.timestamp())
    tag = f"fresh-{seed}-{day.date().isoformat()}-"
    for index, lead in enumerate(leads):
        email = lead["email"]
        for k in range(1 + int(r() * 3)):
            x = r()
            typ, props = (("pricing_page_view", {"url": "/pricing"}) if x < 0.2 else
                          ("email_click", {"url": SITE + BLOG[int(r() * len(BLOG))]})
                          if x < 0.5 else ("page_view", {"url": BLOG[int(r() * len(BLOG))]}))
            yield {"id": f"{tag}{index}-{k}", "email": email, "type": typ,
                   "occurred_at": clock.iso(base + int(r() * (_DAY - 1))), "properties": props}
