"""Settings from environment variables (and a `.env` file). Built on demand, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator
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
    public_url: str = Field(default="http://localhost:8000",
                            description="base of unsubscribe links")
    secret_key: str | None = Field(default=None, min_length=16,
                                   description="signs unsubscribe tokens")
    schedule_ahead_hours: int = Field(default=72, ge=0, le=72,
                                      description="how far ahead a touch may be handed to the "
                                      "transport for a scheduled send")
    # -- SendGrid (transport `sendgrid`) -------------------------------------------------
    sendgrid_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("SENDGRID_API_KEY",
                                                    "NURTURE_SENDGRID_API_KEY"))
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    sendgrid_concurrency: int = Field(default=8, ge=1, le=64)
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
