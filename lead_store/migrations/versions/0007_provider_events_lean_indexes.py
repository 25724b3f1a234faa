"""provider_events, leaner to write: only the indexes the webhook's readers use — the touch
index goes (no query looks events up by touch; `nurture simulate` joins all of them), and
the outcome index becomes a partial index over the rows still to apply (`pending`/`error`),
which is all that is ever looked up by outcome — and no foreign key to webhook_batches (a
check per inserted event; the batch row is always written first, by the same code, and
batches are never deleted). On PostgreSQL the raw batch body is compressed with lz4
(pglz took ~3 µs per event) where the server has it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 23:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

UNAPPLIED = sa.text("outcome IN ('pending', 'error')")


FK = 'fk_provider_events_batch_id_webhook_batches'


def upgrade() -> None:
    op.drop_index('ix_provider_events_touch', table_name='provider_events')
    op.drop_index('ix_provider_events_outcome', table_name='provider_events')
    with op.batch_alter_table('provider_events', schema=None) as b:
        b.drop_constraint(FK, type_='foreignkey')
    op.create_index('ix_provider_events_unapplied', 'provider_events', ['provider', 'outcome'],
                    sqlite_where=UNAPPLIED, postgresql_where=UNAPPLIED)
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql' and bind.exec_driver_sql(
            "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' "
            "AND 'lz4' = ANY(enumvals)").scalar():
        op.execute("ALTER TABLE webhook_batches ALTER COLUMN body SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE webhook_batches ALTER COLUMN body SET COMPRESSION DEFAULT")
    op.drop_index('ix_provider_events_unapplied', table_name='provider_events')
    with op.batch_alter_table('provider_events', schema=None) as b:
        b.create_foreign_key(FK, 'webhook_batches', ['batch_id'], ['id'], ondelete='SET NULL')
    op.create_index('ix_provider_events_outcome', 'provider_events', ['outcome'])
    op.create_index('ix_provider_events_touch', 'provider_events', ['touch_id'])
