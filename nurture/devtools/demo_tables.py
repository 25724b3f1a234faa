"""The weighted tables the demo data draws from: names, titles, companies, countries and
time zones, sources and UTM tags, plans, personas and the pages and assets they visit.
Data only; `nurture.devtools.demo_data` does the drawing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def weighted(pairs: Sequence[tuple[T, int]]) -> tuple[T, ...]:
    """Expand (value, weight) pairs into a flat tuple; `t[int(r() * len(t))]` draws by weight."""
    return tuple(value for value, weight in pairs for _ in range(weight))


# --- people -----------------------------------------------------------------------------------

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Daniel", "Karen", "Matthew", "Nancy", "Anthony", "Lisa", "Mark", "Emily", "Oliver", "Amelia",
    "Harry", "Isla", "George", "Sophie", "Lukas", "Hannah", "Felix", "Lea", "Jonas", "Mia",
    "Priya", "Arjun", "Ananya", "Rahul", "Aisha", "Vikram", "Chloe", "Liam", "Noah", "Olivia",
    "Lucas", "Camille", "Hugo", "Ines", "Mateus", "Beatriz", "Wei", "Mei", "Hiroshi", "Yuki",
    "Sven", "Femke", "Carlos", "Lucia", "Ana", "Ben", "Zoe", "Ethan", "Grace", "Omar", "Fatima",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young", "King", "Wright",
    "Evans", "Hughes", "Patel", "Sharma", "Gupta", "Singh", "Iyer", "Reddy", "Mueller", "Schmidt",
    "Schneider", "Fischer", "Weber", "Becker", "Wagner", "Dubois", "Lefevre", "Moreau", "Bernard",
    "de Vries", "Jansen", "Bakker", "Silva", "Santos", "Oliveira", "Tanaka", "Sato", "Suzuki",
    "Chen", "Wang", "Li", "Tan", "Nguyen", "O'Brien", "MacDonald", "Kowalski", "Novak", "Rossi",
    "Fernandez", "Lopez", "Kim", "Park", "Cohen", "Murphy", "Kelly", "Campbell", "Stewart",
)


def slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if "a" <= ch <= "z")


FREE_MAIL = ("gmail.example", "yahoo.example", "hotmail.example", "outlook.example")
FREE_MAIL_SHARE = 0.12

TITLES = weighted([
    # senior: matches the fit rule (vp|vice president|director|head of|chief), ~30%
    ("VP of Marketing", 5), ("VP Sales", 3), ("Vice President, Revenue Operations", 2),
    ("VP Demand Generation", 2), ("Director of Marketing", 5), ("Director, Demand Generation", 3),
    ("Marketing Director", 2), ("Sales Director", 2), ("Head of Growth", 2),
    ("Head of Marketing Operations", 1), ("Head of Sales Development", 1),
    ("Chief Marketing Officer", 1), ("Chief Revenue Officer", 1),
    # managers ~30%
    ("Marketing Manager", 8), ("Demand Generation Manager", 5),
    ("Marketing Operations Manager", 5),
    ("Product Marketing Manager", 4), ("Sales Operations Manager", 3), ("Content Manager", 3),
    ("Growth Marketing Manager", 2),
    # specialists ~20%
    ("Marketing Specialist", 6), ("Email Marketing Specialist", 4), ("SEO Specialist", 3),
    ("Marketing Coordinator", 4), ("Content Strategist", 3),
    # analysts ~12%
    ("Marketing Analyst", 5), ("Revenue Operations Analyst", 3), ("Business Analyst", 2),
    ("Data Analyst", 2),
    # other ~6%, and 2% left blank
    ("Founder", 2), ("Consultant", 2), ("Account Executive", 1), ("Software Engineer", 1),
    (None, 2),
])

# --- companies --------------------------------------------------------------------------------

NAME_HEADS = ("North", "Blue", "Silver", "Iron", "Bright", "Red", "Cedar", "Summit", "Harbor",
              "Clear", "Stone", "Swift", "Green", "Oak", "River", "Star", "Pine", "Maple",
              "Golden", "Frost", "Copper", "Falcon", "Lumen", "Nova", "Terra", "Atlas")
NAME_TAILS = ("wind", "peak", "field", "bridge", "gate", "line", "works", "point", "stone",
              "wave", "crest", "forge", "light", "path", "leaf", "view", "ridge", "brook",
              "spark", "haven", "shore", "vale", "mark", "core")
INDUSTRY_SUFFIXES = {
    "software": ("Labs", "Software", "Cloud", "AI", "Systems"),
    "fintech": ("Pay", "Capital", "Finance", "Ledger"),
    "healthcare": ("Health", "Medical", "Care", "Clinics"),
    "manufacturing": ("Industries", "Manufacturing", "Components", "Works"),
    "retail": ("Goods", "Supply", "Outfitters", "Market"),
    "education": ("Learning", "Academy", "Education"),
    "logistics": ("Logistics", "Freight", "Shipping"),
    "marketing_services": ("Agency", "Media", "Creative"),
    "professional_services": ("Partners", "Consulting", "Advisory"),
}
INDUSTRIES = weighted([
    ("software", 22), ("fintech", 10), ("healthcare", 12), ("manufacturing", 12), ("retail", 10),
    ("education", 8), ("logistics", 8), ("marketing_services", 9), ("professional_services", 9),
])
SIZE_BUCKETS = weighted([((1, 10), 15), ((11, 50), 30), ((51, 199), 25), ((200, 1000), 18),
                       ((1001, 5000), 9), ((5001, 50000), 3)])

# country -> (weight, time zones by weight)
COUNTRIES: dict[str, tuple[int, tuple[tuple[str, int], ...]]] = {
    "US": (45, (("America/New_York", 45), ("America/Chicago", 30), ("America/Denver", 5),
                ("America/Los_Angeles", 20))),
    "GB": (12, (("Europe/London", 1),)),
    "DE": (8, (("Europe/Berlin", 1),)),
    "IN": (8, (("Asia/Kolkata", 1),)),
    "CA": (6, (("America/Toronto", 6), ("America/Vancouver", 4))),
    "AU": (5, (("Australia/Sydney", 6), ("Australia/Melbourne", 4))),
    "FR": (4, (("Europe/Paris", 1),)),
    "NL": (3, (("Europe/Amsterdam", 1),)),
    "BR": (3, (("America/Sao_Paulo", 1),)),
    "SG": (2, (("Asia/Singapore", 1),)),
    "JP": (2, (("Asia/Tokyo", 1),)),
    "ES": (2, (("Europe/Madrid", 1),)),
}
COUNTRY_TABLE = weighted([(code, w) for code, (w, _) in COUNTRIES.items()])
TZ_TABLES = {code: weighted(zones) for code, (_, zones) in COUNTRIES.items()}

# --- acquisition ------------------------------------------------------------------------------

# source -> weighted (utm_source, utm_medium, utm_campaign); 'other' sources match no audience
SOURCES = weighted([("website", 60), ("webinar", 20), ("content_syndication", 10),
                  ("partner", 5), ("trade_show", 3), ("referral", 2)])
UTMS = {
    "website": weighted([
        (("google", "organic", None), 30), (("google", "cpc", "q4-lead-management-search"), 20),
        (("linkedin", "paid_social", "q4-abm-linkedin"), 15), ((None, None, None), 20),
        (("newsletter", "email", "2026-10-newsletter"), 10), (("g2", "referral", None), 5)]),
    "webinar": weighted([
        (("webinar", "event", "2026-10-scoring-masterclass"), 45),
        (("webinar", "event", "2026-09-sales-handoff-live"), 30),
        (("linkedin", "paid_social", "webinar-promo-q4"), 15),
        (("newsletter", "email", "webinar-invite-oct"), 10)]),
    "content_syndication": weighted([
        (("techtarget", "syndication", "q4-buyers-guide-synd"), 50),
        (("netline", "syndication", "funnel-benchmark-2026"), 30),
        (("integrate", "syndication", "q4-scoring-checklist"), 20)]),
    "partner": weighted([(("northwind-partners", "partner", "partner-referral"), 6),
                       (("bluepeak-consulting", "partner", "co-marketing-q4"), 4)]),
    "trade_show": weighted([(("saas-summit-2026", "event", "booth-scans"), 6),
                          (("martech-expo", "event", "booth-scans"), 4)]),
    "referral": weighted([((None, None, None), 1)]),
}
# plan_interest by company size: 1000+, 200-999, smaller
PLANS_LARGE = weighted([("enterprise", 45), ("growth", 25), (None, 30)])
PLANS_MID = weighted([("growth", 40), ("enterprise", 15), ("starter", 10), (None, 35)])
PLANS_SMALL = weighted([("starter", 40), ("growth", 20), (None, 40)])

# --- activities -------------------------------------------------------------------------------

PERSONAS = weighted([("dormant", 40), ("researcher", 35), ("evaluator", 15), ("hand_raiser", 5),
                   ("noisy", 5)])
BLOG = tuple(f"/blog/{s}" for s in (
    "what-is-lead-scoring", "mql-vs-sql", "lead-nurture-examples", "funnel-metrics-that-matter",
    "email-cadence-best-practices", "marketing-sales-handoff", "buying-stages-explained",
    "intent-data-101", "recycling-cold-leads", "b2b-email-deliverability", "abm-vs-inbound",
    "form-conversion-tips", "crm-hygiene-checklist", "webinar-follow-up-playbook",
    "attribution-models-compared", "lead-routing-rules"))
PRODUCT_PAGES = ("/product", "/features/lead-scoring", "/features/nurture-tracks",
                 "/features/routing", "/integrations", "/customers", "/security")
RESEARCH_ASSETS = ("buyers-guide-lead-management.pdf", "funnel-benchmark-2026.pdf",
                   "lead-scoring-checklist.pdf", "state-of-b2b-marketing-2026.pdf",
                   "nurture-email-templates.zip")
EVALUATION_ASSETS = ("case-study-northwind.pdf", "case-study-bluepeak-labs.pdf",
                     "case-study-harborline-health.pdf", "roi-calculator.xlsx",
                     "security-whitepaper.pdf")
WEBINARS = ("2026-10-scoring-masterclass", "2026-09-sales-handoff-live",
            "2026-08-nurture-benchmarks")
FORMS = ("newsletter-signup", "contact-us", "event-registration", "content-gate")
SITE = "https://acme.example"
# local hour of a session: office hours, a little early/late
LOCAL_HOURS = weighted([(7, 2), (8, 6), (9, 12), (10, 14), (11, 13), (12, 8), (13, 11), (14, 12),
                      (15, 10), (16, 8), (17, 5), (19, 2), (21, 2)])
