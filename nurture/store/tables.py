"""SQLAlchemy 2.0 table definitions: the single source of truth Alembic migrates from.

SQLAlchemy Core rather than ORM objects: the cycle reads and writes whole chunks with one
statement each, which is what keeps a million leads a day on one small machine.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# BIGINT on PostgreSQL, INTEGER (rowid alias, autoincrementing) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the lead store; use UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _first(column: str):
    """Column default: the value the INSERT gives `column` (first-touch fields)."""
    def default(context) -> object:
        return context.get_current_parameters().get(column)
    return default


leads = Table(
    "leads", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("first_name", String(200)),
    Column("last_name", String(200)),
    Column("company", String(300)),
    Column("title", String(300)),
    Column("industry", String(200)),
    Column("company_size", Integer),
    Column("country", String(100)),
    Column("timezone", String(64)),
    Column("source", String(100)),
    Column("utm_source", String(200)),
    Column("utm_medium", String(200)),
    Column("utm_campaign", String(200)),
    # first touch: the source/UTM the lead arrived with, set by every INSERT (the column
    # default reads the row being inserted) and never by an UPDATE, so a re-import that
    # changes `source` keeps the original here (results reports credit both)
    Column("first_source", String(100), default=_first("source")),
    Column("first_utm_source", String(200), default=_first("utm_source")),
    Column("first_utm_medium", String(200), default=_first("utm_medium")),
    Column("first_utm_campaign", String(200), default=_first("utm_campaign")),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # lifecycle and scoring state, written by the cycle
    Column("lifecycle_stage", String(20), nullable=False, server_default="new"),
    Column("stage_entered_at", UTCDateTime, nullable=False),
    Column("engagement_since", UTCDateTime),
    Column("recycle_count", Integer, nullable=False, server_default="0"),
    Column("recycle_until", UTCDateTime),
    Column("buying_stage", String(64)),
    Column("fit_score", Float),
    Column("engagement_score", Float),
    Column("score", Float),
    Column("grade", String(1)),
    Column("scored_at", UTCDateTime),
    # NULL or past = the next cycle must look at this lead (set on any change)
    Column("next_check_at", UTCDateTime),
    # new activity not yet evaluated: `process_engagement` routes these within minutes
    Column("activity_pending", Boolean, nullable=False, server_default=text("false")),
    # bumped by every write to the row: writers compare-and-set on it, so a decision made on
    # a stale snapshot is refused (and re-evaluated) instead of overwriting newer state
    Column("version", Integer, nullable=False, server_default="0"),
    Index("ix_leads_cycle", "lifecycle_stage", "next_check_at"),
    Index("ix_leads_activity_pending", "activity_pending"),
)

# Per-lead campaign/track state: which campaign the lead is in and where in its tracks.
campaign_states = Table(
    "campaign_states", metadata,
    Column("lead_id", Id, ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True),
    Column("campaign", String(100), nullable=False),
    Column("track", String(100)),
    Column("track_rounds", JSON, nullable=False, default=dict),
    Column("enrolled_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_campaign_states_campaign", "campaign"),
)

activities = Table(
    "activities", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("external_id", String(200), nullable=False, unique=True),
    Column("lead_id", Id, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("properties", JSON, nullable=False, default=dict),
    Column("source", String(50), nullable=False, server_default="import"),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_activities_lead_time", "lead_id", "occurred_at"),
)

touches = Table(
    "touches", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lead_id", Id, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
    Column("campaign", String(100), nullable=False),
    Column("track", String(100), nullable=False),
    Column("step", String(100), nullable=False),
    Column("round", Integer, nullable=False, server_default="0"),
    Column("variant", String(50)),
    # the touch state machine (nurture.core.ledger): planned -> sending (owned by a run) ->
    # sent | planned again (retryable, after retry_at) | failed | in_doubt -> settled;
    # planned -> cancelled
    Column("status", String(20), nullable=False),
    Column("planned_at", UTCDateTime, nullable=False),
    Column("send_at", UTCDateTime, nullable=False),
    Column("claimed_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # the run that owns a `sending` touch (fencing: results from any other run are refused)
    Column("run_id", Id),
    # a retryable failure waits until then before it is claimed again
    Column("retry_at", UTCDateTime),
    # SendGrid batch id of a scheduled send, so an unsubscribe can still cancel it
    Column("provider_batch_id", String(100)),
    Column("subject", Text),
    Column("transport", String(20)),
    Column("provider_message_id", String(200)),
    Column("error", Text),
    Column("updated_at", UTCDateTime, nullable=False),
    # what the provider reported after accepting it (Event Webhook):
    # delivered | deferred | bounced | blocked | dropped
    Column("delivery_status", String(20)),
    Column("delivered_at", UTCDateTime),
    Column("last_event_at", UTCDateTime),
    UniqueConstraint("lead_id", "campaign", "step", "round", name="uq_touches_ledger"),
    Index("ix_touches_status_send_at", "status", "send_at"),
    Index("ix_touches_provider_message_id", "provider_message_id"),
)

transitions = Table(
    "transitions", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lead_id", Id, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
    Column("from_stage", String(20), nullable=False),
    Column("to_stage", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("rule", String(200)),
    Column("actor", String(200), nullable=False),
    Column("note", Text),
    Column("at", UTCDateTime, nullable=False),
    # the handoff an MQL transition created: at most one MQL transition per handoff
    Column("handoff_id", Id),
    # deal value sales gave with `opportunity`/`won` (`--amount`): pipeline and revenue
    Column("amount", Float),
    Index("ix_transitions_lead", "lead_id", "at"),
    Index("uq_transitions_handoff", "handoff_id", unique=True),
)

handoffs = Table(
    "handoffs", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lead_id", Id, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
    Column("owner", String(320), nullable=False),
    # pending -> accepted | rejected | expired
    Column("status", String(20), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("score", Float),
    Column("grade", String(1)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sla_due_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    Column("outcome_reason", String(100)),
    Column("note", Text),
    # delivery to the CRM webhook (NURTURE_HANDOFF_WEBHOOK_URL): pending -> delivering
    # (claimed by one run at a time) -> delivered, or pending again with a backoff
    Column("crm_status", String(20), nullable=False, server_default="pending"),
    Column("crm_claimed_by", Id),
    Column("crm_claimed_at", UTCDateTime),
    Column("crm_attempts", Integer, nullable=False, server_default="0"),
    Column("crm_next_attempt_at", UTCDateTime),
    Column("crm_delivered_at", UTCDateTime),
    Column("crm_error", Text),
    Index("ix_handoffs_lead", "lead_id"),
    Index("ix_handoffs_crm", "crm_status", "crm_next_attempt_at"),
    Index("ix_handoffs_status_due", "status", "sla_due_at"),
    # at most one open handoff per lead, whoever tries to create a second one
    Index("uq_handoffs_open_lead", "lead_id", unique=True,
          sqlite_where=text("status = 'pending'"), postgresql_where=text("status = 'pending'")),
)

suppressions = Table(
    "suppressions", metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", String(50), nullable=False),  # unsubscribe, bounce, spamreport, manual…
    Column("source", String(100)),
    Column("detail", Text),
    Column("created_at", UTCDateTime, nullable=False),
)

counters = Table(
    "counters", metadata,
    Column("name", String(100), primary_key=True),
    Column("value", BigInteger, nullable=False, server_default=text("0")),
)

kv = Table(
    "kv", metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

# Runs that claim work (daily cycle, instant routing, handoff delivery...). A run beats its
# heartbeat while it works; a newer run takes over claims only from a run whose heartbeat
# stopped, and marks it `lost` so its late writes are refused (fencing, not timeouts).
runs = Table(
    "runs", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("as_of", UTCDateTime),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    # running -> finished | failed | lost (taken over after its heartbeat stopped)
    Column("status", String(20), nullable=False),
    Column("detail", Text),
    Index("ix_runs_status_heartbeat", "status", "heartbeat_at"),
)

# Lead events (nurture.lead.mql, ...) recorded in the same transaction as the decision that
# caused them, then emitted and marked: exactly one per transition, even across crashes.
lead_events = Table(
    "lead_events", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lead_id", Id, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
    Column("transition_id", Id, unique=True),
    Column("kind", String(40), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("claimed_by", Id),
    Column("claimed_at", UTCDateTime),
    Column("emitted_at", UTCDateTime),
    Index("ix_lead_events_pending", "emitted_at", "id"),
)

# Raw webhook bodies, stored before anything is applied: nothing a provider tells us is lost,
# and a batch whose application failed can be applied again (`nurture webhooks replay`).
webhook_batches = Table(
    "webhook_batches", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("provider", String(30), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("body", Text, nullable=False),
    Column("signed", Boolean, nullable=False),
    Column("events", Integer, nullable=False, server_default="0"),
    Column("applied_at", UTCDateTime),
    Column("new_events", Integer),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Index("ix_webhook_batches_unapplied", "applied_at"),
)

# literal values, not parameters: only then can either planner use the partial index below
UNAPPLIED_SQL = text("outcome IN ('pending', 'error')")

# One row per provider event, unique by the provider's event id: a retried batch or a
# repeated event is applied once.
provider_events = Table(
    "provider_events", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("provider", String(30), nullable=False),
    Column("event_id", String(200), nullable=False),
    # the batch it came in (no foreign key: a check per event, and the batch row is always
    # written first, by the same code; batches are never deleted)
    Column("batch_id", Id),
    Column("event", String(40), nullable=False),
    Column("email", String(320), nullable=False),
    Column("touch_id", Id),
    Column("lead_id", Id),
    Column("occurred_at", UTCDateTime, nullable=False),
    # pending (stored, not yet applied) | applied | unmatched (no touch/lead known:
    # recorded, not lost) | ignored | error (kept with its reason; retried by later runs)
    Column("outcome", String(20), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    UniqueConstraint("provider", "event_id", name="uq_provider_events_event"),
    # only the rows still to apply are ever looked up by outcome (see UNAPPLIED_SQL); a
    # full index on outcome or touch_id would be rewritten by every batch for no reader
    Index("ix_provider_events_unapplied", "provider", "outcome", sqlite_where=UNAPPLIED_SQL,
          postgresql_where=UNAPPLIED_SQL),
)


# Campaign delivery status, one row per campaign (created on first pause). The deliverability
# guard pauses (active -> paused) and `nurture campaign resume` resumes (paused -> active),
# both compare-and-set on status; `version` counts the changes. A paused campaign gets no
# planned or claimed touches. `pauses` numbers the pauses: (campaign, pauses) names the
# `nurture.campaign.paused` Prefect event, emitted until `event_emitted_at` is set.
campaign_status = Table(
    "campaign_status", metadata,
    Column("campaign", String(100), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("version", Integer, nullable=False, server_default="0"),
    Column("pauses", Integer, nullable=False, server_default="0"),
    Column("reason", Text),
    Column("metrics", JSON),
    Column("paused_at", UTCDateTime),
    Column("paused_by", String(200)),
    Column("resumed_at", UTCDateTime),
    Column("resumed_by", String(200)),
    Column("event_emitted_at", UTCDateTime),
)

# Marketing spend per source / UTM campaign and period (`nurture costs import FILE.csv`),
# for cost per lead/MQL/opportunity and ROI. One row per (source, utm_campaign, period).
source_costs = Table(
    "source_costs", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False, server_default=""),
    Column("utm_campaign", String(200), nullable=False, server_default=""),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("amount", Float, nullable=False),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("imported_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "utm_campaign", "period_start", "period_end",
                     name="uq_source_costs_period"),
)
