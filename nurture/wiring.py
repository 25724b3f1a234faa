"""The one place concrete objects are built from settings (never at import time)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from nurture.adapters.crm_webhook import deliver_pending
from nurture.adapters.delivery.memory import MemoryTransport
from nurture.adapters.delivery.outbox import OutboxTransport
from nurture.adapters.sendgrid_events import SendGridEventParser
from nurture.core.config import Config
from nurture.core.ledger import RetryPolicy
from nurture.core.rendering import Renderer
from nurture.core.rules import Rules
from nurture.services import events
from nurture.services.cycle import SendContext
from nurture.services.deliverability import guard
from nurture.services.events import WebhookEvents
from nurture.services.ports import Transport
from nurture.services.results import build
from nurture.services.runs import Lease
from nurture.services.validation import load_valid_config
from nurture.settings import Settings
from nurture.store.db import is_migrated, make_engine
from nurture.store.events import EventStore
from nurture.store.results_queries import SqlResultsQueries
from nurture.store.runs import RunStore
from nurture.store.sales import SalesStore
from nurture.store.store import LeadStore


class NotMigrated(Exception):
    """The database has no (or an old) schema; `nurture db upgrade` fixes it."""


def build_transport(settings: Settings) -> Transport:
    if settings.transport == "outbox":
        return OutboxTransport(settings.outbox_dir)
    if settings.transport == "memory":
        return MemoryTransport()
    if settings.transport == "sendgrid":
        # deferred: aiohttp and SendGrid's helpers (~0.2 s) only where SendGrid is used
        from nurture.adapters.delivery.sendgrid import RetryPolicy as SendRetry
        from nurture.adapters.delivery.sendgrid import SendGridTransport

        return SendGridTransport(sendgrid_api_key(settings), settings.sendgrid_host,
                                 timeout_seconds=settings.sendgrid_timeout_seconds,
                                 concurrency=settings.sendgrid_concurrency,
                                 sandbox=settings.sendgrid_sandbox,
                                 retry=SendRetry(attempts=settings.sendgrid_max_attempts))
    raise ValueError(f"unknown transport {settings.transport!r}")


class MissingSecret(Exception):
    """A credential the chosen configuration needs is not set anywhere."""


def sendgrid_api_key(settings: Settings) -> str:
    """`SENDGRID_API_KEY`, else the Prefect Secret block `sendgrid-api-key` (so a deployment
    can keep the key in Prefect rather than in the worker's environment)."""
    if settings.sendgrid_api_key:
        return settings.sendgrid_api_key
    try:
        # deferred: Prefect (≈0.6 s) is needed only when the key is not in the environment
        from prefect.blocks.system import Secret

        value = Secret.load("sendgrid-api-key", _sync=True).get()
    except Exception as exc:  # noqa: BLE001 - not found, no API, ... all mean "no key"
        raise MissingSecret(
            "NURTURE_TRANSPORT=sendgrid needs an API key: set SENDGRID_API_KEY or create a "
            f"Prefect Secret block named 'sendgrid-api-key' ({type(exc).__name__})") from None
    return str(value)


def webhook_events(engine):
    """Provider-event orchestration over the store and the SendGrid parser (its ports)."""
    return WebhookEvents(EventStore(engine), SendGridEventParser())


@dataclass
class App:
    """Lazily built dependencies for one command or flow run."""

    settings: Settings

    @cached_property
    def engine(self):
        return make_engine(self.settings.database_url)

    @cached_property
    def store(self):
        return LeadStore(self.engine)

    @cached_property
    def webhook_events(self):
        return webhook_events(self.engine)

    def require_schema(self) -> None:
        if not is_migrated(self.engine):
            raise NotMigrated(f"the database at {self.settings.database_url} is not set up or "
                              "is out of date; run `nurture db upgrade` first")

    @cached_property
    def config(self) -> Config:
        """The validated config, templates included; raises `ConfigError`."""
        return load_valid_config(self.settings.campaigns_dir, self.settings.templates_dir)

    @cached_property
    def rules(self) -> Rules:
        return Rules.compile(self.config)

    @cached_property
    def renderer(self) -> Renderer:
        return Renderer(self.settings.templates_dir)

    @cached_property
    def secret(self) -> str:
        return self.settings.secret_key or self.store.get_or_create_secret()

    def send_context(self, transport: Transport | None = None) -> SendContext:
        s = self.settings
        transport = transport or build_transport(s)
        # in-doubt touches are resent after the settle window only where provider events
        # would have settled them: the signed SendGrid webhook is configured
        webhook = s.transport == "sendgrid" and bool(s.sendgrid_webhook_public_key)
        return SendContext(rules=self.rules, renderer=self.renderer, transport=transport,
                           secret=self.secret, public_url=s.public_url,
                           schedule_ahead=timedelta(hours=s.schedule_ahead_hours),
                           retry=RetryPolicy(max_attempts=s.max_send_attempts,
                                             base=timedelta(minutes=s.retry_base_minutes)),
                           lapse=timedelta(seconds=s.run_lapse_seconds),
                           in_doubt_settle=(timedelta(minutes=s.in_doubt_settle_minutes)
                                            if webhook else None),
                           batch_size=getattr(transport, "batch_size", 200),
                           heartbeat=s.run_heartbeat_seconds)

    def lease(self, kind: str, as_of: datetime | None = None):
        """A run lease in the store's run registry (heartbeat thread; fencing)."""
        return Lease(RunStore(self.engine), kind, as_of, self.settings.run_heartbeat_seconds,
                     self.settings.run_lapse_seconds)


def deliver_handoffs(app: App, now: datetime | None = None) -> dict[str, int] | None:
    """Push pending MQL handoffs to the CRM webhook, when one is configured (else None)."""
    if not app.settings.handoff_webhook_url:
        return None

    with app.lease("handoff-delivery") as lease:
        return deliver_pending(SalesStore(app.engine), app.settings.handoff_webhook_url,
                               app.settings.handoff_webhook_secret or app.secret,
                               now or datetime.now(UTC), lease.run_id)


def make_canceller(settings: Settings):
    """A scheduled-send canceller when SendGrid is configured (scheduled sends exist only
    there), else None."""
    if settings.transport != "sendgrid" and not settings.sendgrid_api_key:
        return None
    try:
        key = sendgrid_api_key(settings)
    except MissingSecret:
        return None
    from nurture.adapters.sendgrid_scheduled import ScheduledSendCanceller  # see above

    return ScheduledSendCanceller(key, settings.sendgrid_host,
                                  min(settings.sendgrid_timeout_seconds, 10.0))


def cancel_scheduled_sends(app: App, emails: list[str] | None = None,
                           now: datetime | None = None) -> dict[str, Any]:
    """`nurture.services.events.cancel_scheduled_sends` with this app's store and SendGrid."""
    return events.cancel_scheduled_sends(app.webhook_events,
                                         lambda: make_canceller(app.settings), emails, now)


def retry_provider_events(app: App, max_attempts: int | None = None) -> dict[str, Any]:
    """`nurture.services.events.retry_provider_events` with this app's store and SendGrid."""
    return events.retry_provider_events(app.webhook_events,
                                        lambda: make_canceller(app.settings),
                                        app.settings.scanner_click_seconds, max_attempts)


def deliverability_guard(engine, as_of: datetime | None = None, emit: bool = True
                         ) -> list[dict[str, Any]]:
    """The deliverability guard over the SQL store on `engine` (pauses made now); with `emit`,
    pauses are announced as Prefect events."""
    announce = None
    if emit:
        # deferred: Prefect's events client (≈0.6 s to import) only when pauses are announced
        from nurture.adapters.prefect_events import announce_pauses

        announce = announce_pauses
    return guard(LeadStore(engine), as_of, announce)


def results_report(engine, report: str, w, **options: Any) -> dict[str, Any]:
    """`nurture.services.results.build` over the SQL store on `engine`."""
    return build(SqlResultsQueries(engine), report, w, **options)
