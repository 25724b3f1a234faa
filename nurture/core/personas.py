"""Built-in personas: the leads a campaign must render well for before real leads get it.

Each persona is a lead mapping (the shape `nurture.store.store.lead_fields` gives templates) that
exercises one edge case: every fit grade and buying stage, missing first name / title /
company, a very long company name, non-ASCII names, and HTML or Jinja syntax typed into lead
fields (which must come out escaped and inert, never evaluated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nurture.core.domain import LEAD_FIELDS, NURTURING, RECYCLED, Grade


@dataclass(frozen=True)
class Persona:
    name: str
    description: str
    lead: dict[str, Any]
    grade: str = Grade.B
    buying_stage: str | None = None  # None: the track's own stage
    lifecycle_stage: str = NURTURING
    tags: tuple[str, ...] = field(default=())


def _lead(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {k: None for k in LEAD_FIELDS}
    base.update({"email": "jordan.lee@example.com", "first_name": "Jordan", "last_name": "Lee",
                 "company": "Example Corp", "title": "Director of Marketing",
                 "industry": "software", "company_size": 250, "country": "US",
                 "timezone": "America/New_York", "source": "website", "utm_source": "google",
                 "utm_medium": "cpc", "utm_campaign": "brand",
                 "created_at": "2026-01-05T12:00:00+00:00"})
    base.update(overrides)
    return base


LONG_COMPANY = ("The International Consolidated Amalgamated Widget Manufacturing and "
                "Distribution Company of Greater Springfield and the Tri-County Area, "
                "Incorporated")

PERSONAS: tuple[Persona, ...] = (
    Persona("grade-a-evaluation", "VP at a 2,000-person software firm comparing vendors",
            _lead(email="maria.garcia@bigsoft.example", first_name="Maria",
                  last_name="Garcia", company="BigSoft", title="VP Marketing",
                  company_size=2000), grade=Grade.A, buying_stage="evaluation"),
    Persona("grade-b-research", "Director at a mid-size company, still researching",
            _lead(), grade=Grade.B, buying_stage="research"),
    Persona("grade-c-research", "Manager at a small agency",
            _lead(email="sam.okafor@smallco.example", first_name="Sam", last_name="Okafor",
                  company="SmallCo", title="Marketing Manager", industry="agency",
                  company_size=20), grade=Grade.C, buying_stage="research"),
    Persona("grade-d-freemail", "Student with a free-mail address, no title or company",
            _lead(email="kid1234@gmail.com", first_name="Alex", last_name=None, company=None,
                  title=None, industry=None, company_size=None), grade=Grade.D,
            buying_stage="research"),
    Persona("recycled", "A lead sales sent back to marketing",
            _lead(email="lee.chen@returning.example", first_name="Lee", last_name="Chen",
                  company="Returning Ltd"), grade=Grade.B, lifecycle_stage=RECYCLED),
    Persona("no-first-name", "Imported with only an email address and a company",
            _lead(email="info@nameless.example", first_name=None, last_name=None,
                  title=None), tags=("missing",)),
    Persona("empty-fields", "Every optional field blank (empty strings from a CSV)",
            _lead(email="blank@empty.example", first_name="", last_name="", company="",
                  title="", industry="", country="", source="website"), tags=("missing",)),
    Persona("long-company", "A very long company name",
            _lead(email="pat@widgets.example", first_name="Pat", company=LONG_COMPANY),
            tags=("layout",)),
    Persona("non-ascii", "Non-ASCII names and company (accents, CJK, RTL)",
            _lead(email="zoe@munchen.example", first_name="Zoë-Åsa", last_name="Öztürk 李",
                  company="Müller & Söhne GmbH — 東京支社 — شركة", country="DE",
                  timezone="Europe/Berlin"), tags=("i18n",)),
    Persona("markup-in-fields", "HTML and Jinja syntax typed into lead fields",
            _lead(email="mallory@evil.example", first_name="<b>Mallory</b>{{ 7*7 }}",
                  last_name="<script>alert(1)</script>",
                  company="{{ lead.email }} & <img src=x onerror=alert(1)>",
                  title="{{ config }}"), tags=("security",)),
)


def persona(name: str) -> Persona:
    for p in PERSONAS:
        if p.name == name:
            return p
    raise KeyError(f"unknown persona {name!r}; known: {', '.join(p.name for p in PERSONAS)}")


def with_custom_fields(lead: dict[str, Any], custom_fields: list[str], *,
                       blank: bool) -> dict[str, Any]:
    """Declared custom attributes: a sample value for full personas, absent for the
    'missing data' ones (as for a real lead imported without that column)."""
    out = dict(lead)
    if not blank:
        for f in custom_fields:
            out.setdefault(f, f"sample {f}")
    return out


def persona_leads(custom_fields: list[str] | None = None) -> list[tuple[Persona, dict]]:
    """(persona, lead mapping) for every built-in persona, with declared custom fields."""
    fields = list(custom_fields or [])
    return [(p, with_custom_fields(p.lead, fields, blank="missing" in p.tags))
            for p in PERSONAS]
