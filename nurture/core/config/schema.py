"""The campaign config's schema: pydantic models for lifecycle.yaml and the campaign files
(docs/campaign-format.md). Every model is strict — an unknown key is an error, not ignored."""

from __future__ import annotations

import re
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nurture.core.domain import MARKETING_STAGES, RECYCLED
from nurture.core.emails import InvalidEmail, is_email, normalize_email

# the stages a campaign's audience may name (marketing's own)
NURTURE_STAGES = tuple(str(s) for s in MARKETING_STAGES)
SLUG = r"^[a-z0-9][a-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Strict):
    """One rule of the condition language; several keys in one mapping must all hold."""

    field: str | None = None
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    matches: str | None = None
    at_least: float | None = None
    at_most: float | None = None
    exists: bool | None = None
    score_at_least: float | None = None
    fit_at_least: float | None = None
    engagement_at_least: float | None = None
    engagement_below: float | None = None
    grade_in: list[Literal["A", "B", "C", "D"]] | None = None
    activity: str | None = None
    within_days: int | None = Field(default=None, ge=1)
    no_engagement_days: int | None = Field(default=None, ge=1)
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    @field_validator("matches")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Condition:
        own = self._own_keys()
        if not own:
            raise ValueError("empty condition: give at least one test")
        field_tests = {"equals", "in_", "matches", "at_most", "exists"} & own
        if self.field is not None and self.activity is not None:
            raise ValueError("`field` and `activity` cannot be in the same condition")
        if field_tests and self.field is None:
            names = ", ".join(sorted(k.rstrip("_") for k in field_tests))
            raise ValueError(f"{names} needs a `field`")
        if self.field is not None and not (field_tests or "at_least" in own):
            raise ValueError(
                "`field` needs a test: equals, in, matches, at_least, at_most or exists"
            )
        if "at_least" in own and self.field is None and self.activity is None:
            raise ValueError("at_least needs a `field` or an `activity`")
        if self.within_days is not None and self.activity is None:
            raise ValueError("within_days needs an `activity`")
        for name in ("all", "any"):
            value = getattr(self, name)
            if value is not None and not value:
                raise ValueError(f"`{name}` needs at least one condition")
        return self

    def _own_keys(self) -> set[str]:
        return {k for k in self.model_fields_set if k not in ("points",)}


class FitRule(Condition):
    points: float


class EngagementRule(_Strict):
    points: float
    max_per_day: int | None = Field(default=None, ge=1)


class Scoring(_Strict):
    fit: list[FitRule] = []
    grades: dict[Literal["A", "B", "C"], float] = {"A": 40, "B": 25, "C": 10}
    engagement: dict[str, EngagementRule] = {}
    decay_half_life_days: float = Field(default=30, gt=0)

    @field_validator("engagement", mode="before")
    @classmethod
    def _points_shorthand(cls, value: Any) -> Any:
        # `page_view: 1` is shorthand for `page_view: {points: 1}`
        if isinstance(value, dict):
            return {k: ({"points": v} if isinstance(v, int | float) and not isinstance(v, bool)
                        else v) for k, v in value.items()}
        return value

    @field_validator("grades")
    @classmethod
    def _grades_descend(cls, value: dict[str, float]) -> dict[str, float]:
        missing = [g for g in ("A", "B", "C") if g not in value]
        if missing:
            raise ValueError(f"grades needs a minimum fit score for {', '.join(missing)}")
        if not value["A"] > value["B"] > value["C"]:
            raise ValueError("grade minimums must descend: A > B > C")
        return value



class BuyingStage(_Strict):
    name: str = Field(pattern=SLUG)
    when: Condition | None = None


class MqlRouting(_Strict):
    when: Condition
    owners: list[str] = Field(min_length=1)
    sla_hours: int = Field(gt=0)

    @field_validator("owners")
    @classmethod
    def _owner_emails(cls, value: list[str]) -> list[str]:
        bad = [o for o in value if not is_email(o)]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}")
        return value


class RecycleRouting(_Strict):
    when: Condition


class RejectAction(_Strict):
    """What a sales reject reason does: recycle after a wait, or disqualify."""

    recycle_after_days: int | None = Field(default=None, ge=0)
    disqualify: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value == "disqualify":
            return {"disqualify": True}
        if isinstance(value, str):
            raise ValueError(f"expected `disqualify` or {{recycle_after_days: N}}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one(self) -> RejectAction:
        if self.disqualify == (self.recycle_after_days is not None):
            raise ValueError("expected `disqualify` or {recycle_after_days: N}")
        return self


class Routing(_Strict):
    mql: MqlRouting
    recycle: RecycleRouting | None = None
    sales_rejected: dict[str, RejectAction] = {}
    max_recycles: int = Field(default=3, ge=0)


class Limits(_Strict):
    max_touches_per_week: int = Field(default=2, ge=1)


class Lifecycle(_Strict):
    scoring: Scoring
    buying_stages: list[BuyingStage] = Field(min_length=1)
    routing: Routing
    limits: Limits = Limits()
    # declared vocabulary, so `nurture validate` can flag typos that would never match
    custom_fields: list[str] = []     # lead attributes beyond the built-in columns
    activity_types: list[str] = []    # activity types rules use besides the scored ones
    # who `nurture test-send` may email: addresses, or `*@domain` for a whole domain
    test_recipients: list[str] = []

    @field_validator("test_recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        bad = [r for r in value if not is_email(r.replace("*@", "x@", 1))]
        if bad:
            raise ValueError(f"not an email address or *@domain: {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _stages(self) -> Lifecycle:
        names = [s.name for s in self.buying_stages]
        if RECYCLED in names:
            raise ValueError("`recycled` is a lifecycle stage and cannot be a buying stage")
        return self

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.buying_stages]


class Sender(_Strict):
    from_email: str
    from_name: str = Field(min_length=1)
    reply_to: str | None = None
    postal_address: str = Field(min_length=5)

    @field_validator("from_email", "reply_to")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                normalize_email(value)
            except InvalidEmail as exc:
                raise ValueError(str(exc)) from None  # names what is wrong with it
        return value


class Audience(_Strict):
    lifecycle_stages: list[Literal["new", "nurturing", "recycled"]] = list(NURTURE_STAGES)
    when: Condition | None = None


class SendWindow(_Strict):
    cron: str

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value


class Variant(_Strict):
    id: str = Field(pattern=SLUG)
    subject: str | None = None
    template: str | None = None


class Step(_Strict):
    id: str = Field(pattern=SLUG)
    subject: str | None = None
    template: str
    when: Condition | None = None
    variants: list[Variant] | None = None

    @model_validator(mode="after")
    def _subjects(self) -> Step:
        if self.variants is not None:
            if not self.variants:
                raise ValueError("variants needs at least one variant")
            ids = [v.id for v in self.variants]
            if len(set(ids)) != len(ids):
                raise ValueError(f"duplicate variant ids: {', '.join(ids)}")
            if self.subject is None and any(v.subject is None for v in self.variants):
                raise ValueError("every variant needs a subject when the step has none")
        elif self.subject is None:
            raise ValueError("a step needs a subject (or variants with subjects)")
        return self

    def variant(self, variant_id: str | None) -> Variant | None:
        """The variant with this id; None for no variant (or an id the step does not have)."""
        return next((v for v in self.variants or () if v.id == variant_id), None)

    def content(self, variant_id: str | None) -> tuple[str, str]:
        """(subject, template) to render for a variant: its own where it sets them, else the
        step's. One place for the fallback, so rendering and validation never disagree."""
        v = self.variant(variant_id)
        return ((v.subject if v and v.subject else self.subject) or "",
                v.template if v and v.template else self.template)


class Track(_Strict):
    name: str = Field(pattern=SLUG)
    stage: str
    cadence_days: int = Field(ge=1)
    send_window: SendWindow | None = None
    on_exhausted: Literal["hold", "restart"] = "hold"
    steps: list[Step] = Field(min_length=1)


class Campaign(_Strict):
    name: str = Field(pattern=SLUG)
    description: str = ""
    priority: int = 0
    audience: Audience = Audience()
    sender: Sender
    tracks: list[Track] = Field(min_length=1)

    def track_for(self, stage: str) -> Track | None:
        for track in self.tracks:
            if track.stage == stage:
                return track
        return None

    def step(self, step_id: str) -> tuple[Track, Step] | None:
        for track in self.tracks:
            for step in track.steps:
                if step.id == step_id:
                    return track, step
        return None
