"""Settings from environment variables (and a `.env` file). Built on demand, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting has an environment variable; README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_", env_file=".env",
                                      env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(default="sqlite:///nurture.db",
                              description="SQLAlchemy URL of the lead store")
    campaigns_dir: Path = Field(default=Path("campaigns"))
    templates_dir: Path = Field(default=Path("templates"))
    transport: Literal["outbox", "sendgrid", "memory"] = "outbox"
    outbox_dir: Path = Field(default=Path("outbox"))
    default_timezone: str = "UTC"
    chunk_size: int = Field(default=5000, ge=1, le=200_000)
    # -- scale-out (docs/scaling.md) ------------------------------------------------------
    workers: int = Field(default=1, ge=1, le=256,
                         description="chunks of leads the cycle works on at once (1: one "
                         "after another, in the flow's process)")
    task_runner: Literal["auto", "threads", "dask"] = Field(
        default="auto", description="how chunks run when workers > 1: auto = a Dask cluster "
        "on PostgreSQL (processes), threads on SQLite (one writer at a time anyway)")
    dask_address: str | None = Field(default=None,
                                     description="an existing Dask scheduler, e.g. "
                                     "tcp://10.0.0.5:8786 (else a local cluster is started)")
    public_url: str = Field(default="http://localhost:8000",
                            description="base of unsubscribe links")
    secret_key: str | None = Field(default=None, min_length=16,
                                   description="signs unsubscribe tokens")
    schedule_ahead_hours: int = Field(default=72, ge=0, le=72,
                                      description="how far ahead a touch may be handed to the "
                                      "transport for a scheduled send")
    # -- the send ledger and runs (exactly once) -----------------------------------------
    run_heartbeat_seconds: float = Field(default=10.0, gt=0, le=300,
                                         description="how often a run beats its heartbeat")
    run_lapse_seconds: float = Field(default=60.0, gt=0, le=3600,
                                     description="a run whose heartbeat has been silent this "
                                     "long is taken over by a newer one")
    run_wait_seconds: float = Field(default=300.0, ge=0, le=86_400,
                                    description="how long a run waits for touches another "
                                    "live run holds before it gives up (exit 1)")
    in_doubt_settle_minutes: float = Field(default=60.0, ge=0, le=10_080,
                                           description="with the signed webhook configured, "
                                           "an in-doubt touch with no provider event this "
                                           "long is sent again (0 = at the next run)")
    max_send_attempts: int = Field(default=5, ge=1, le=50,
                                   description="attempts per touch across runs for passing "
                                   "failures before it fails for good")
    retry_base_minutes: float = Field(default=15.0, ge=0, le=1440,
                                      description="backoff before the first retry; doubles "
                                      "per attempt, at most 24 h")
    # -- SendGrid (transport `sendgrid`) -------------------------------------------------
    sendgrid_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("SENDGRID_API_KEY",
                                                    "NURTURE_SENDGRID_API_KEY"))
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # requests in flight at once over pooled keep-alive connections (also the send batch)
    sendgrid_concurrency: int = Field(default=256, ge=1, le=2048)
    sendgrid_max_attempts: int = Field(default=5, ge=1, le=10)
    sendgrid_sandbox: bool = False
    # -- the HTTP app (`nurture serve`) ---------------------------------------------------
    sendgrid_webhook_public_key: str | None = None
    webhook_allow_unsigned: bool = Field(default=False, description="development only")
    webhook_max_age_seconds: int = Field(default=600, ge=30)
    scanner_click_seconds: float = Field(default=10.0, ge=0)
    api_key: str | None = Field(default=None, min_length=16)
    max_body_bytes: int = Field(default=5_000_000, ge=1024)
    # -- handoffs to a CRM ----------------------------------------------------------------
    handoff_webhook_url: str | None = None
    handoff_webhook_secret: str | None = Field(default=None, min_length=16)

    @model_validator(mode="after")
    def _lapse_after_beats(self) -> Settings:
        if self.run_lapse_seconds < 2 * self.run_heartbeat_seconds:
            raise ValueError("NURTURE_RUN_LAPSE_SECONDS must be at least twice "
                             "NURTURE_RUN_HEARTBEAT_SECONDS (a live run must never look dead)")
        return self

    @model_validator(mode="after")
    def _dask_needs_a_server_database(self) -> Settings:
        uses_dask = self.task_runner == "dask" or bool(self.dask_address)
        if uses_dask and self.database_url.startswith("sqlite"):
            raise ValueError("Dask workers are separate processes (or machines) and SQLite "
                             "takes one writer at a time on one machine: use PostgreSQL "
                             "(NURTURE_DATABASE_URL=postgresql+psycopg://...), or "
                             "NURTURE_TASK_RUNNER=threads")
        return self

    @field_validator("dask_address")
    @classmethod
    def _scheduler(cls, value: str | None) -> str | None:
        if not value:
            return None
        if "://" not in value:
            value = f"tcp://{value}"
        scheme, _, rest = value.partition("://")
        if scheme not in ("tcp", "tls", "ws", "wss", "inproc") or ":" not in rest:
            raise ValueError(f"expected a Dask scheduler address like tcp://host:8786, "
                             f"got {value!r}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("public_url", "sendgrid_host", "handoff_webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")
