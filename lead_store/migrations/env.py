"""Alembic environment: metadata comes from nurture.store.tables, the engine from the caller
(or NURTURE_DATABASE_URL when run by the `alembic` command line)."""

from __future__ import annotations

from alembic import context

from nurture.store.tables import metadata

config = context.config


def _engine():
    engine = config.attributes.get("engine")
    if engine is None:
        from nurture.settings import Settings
        from nurture.store.db import make_engine

        engine = make_engine(Settings().database_url)
    return engine


def run_migrations_online() -> None:
    engine = _engine()
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          compare_type=True)
        context.run_migrations()


if context.is_offline_mode():  # pragma: no cover
    raise SystemExit("offline migrations are not supported; run `nurture db upgrade`")
run_migrations_online()
