"""Settings from environment variables (and a `.env` file). Built on demand, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting has an environment variable; README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_", env_file=".env",
                                      env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(default="sqlite:///nurture.db",
                              description="SQLAlchemy URL of the lead store")
    campaigns_dir: Path = Field(default=Path("campaigns"))
    templates_dir: Path = Field(default=Path("templates"))
    transport: Literal["outbox", "memory"] = "outbox"
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

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")
