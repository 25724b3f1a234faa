"""The database migrations (Alembic). The store itself lives in `nurture.store`.

The package keeps this name because applied migration files import `lead_store.tables`;
migrations are never edited, so `lead_store.tables` stays as an alias of `nurture.store.tables`.
"""
