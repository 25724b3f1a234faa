"""Alias kept for the migration files, which import `lead_store.tables` (see the package doc)."""

from nurture.store.tables import *  # noqa: F403
