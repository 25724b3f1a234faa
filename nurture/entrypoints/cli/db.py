"""`nurture db upgrade`: create or migrate the lead store's schema."""

from __future__ import annotations

import argparse

from nurture.entrypoints.cli.common import EXIT_OK, build_app, console


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    # deferred: Alembic and SQLAlchemy are heavy for `nurture --help`
    from nurture.store.db import current_revision, upgrade

    app = build_app()
    upgrade(app.engine)
    console().print(f"Database {app.settings.database_url} is at revision "
                    f"{current_revision(app.engine)} (up to date).")
    return EXIT_OK


def add_commands(sub) -> None:
    """`db upgrade`."""
    db = sub.add_parser("db", help="manage the lead store database")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="create or migrate the database schema (Alembic)")
    up.set_defaults(func=cmd_db_upgrade)
