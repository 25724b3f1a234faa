"""provider_events: only the indexes the webhook's readers use — the touch index goes (no
query looks events up by touch; `nurture simulate` joins all of them), and the outcome
index becomes a partial index over the rows still to apply (`pending`/`error`), which is
all that is ever looked up by outcome. Each batch of 1,000 events no longer dirties two
whole indexes.

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


def upgrade() -> None:
    op.drop_index('ix_provider_events_touch', table_name='provider_events')
    op.drop_index('ix_provider_events_outcome', table_name='provider_events')
    op.create_index('ix_provider_events_unapplied', 'provider_events', ['provider', 'outcome'],
                    sqlite_where=UNAPPLIED, postgresql_where=UNAPPLIED)


def downgrade() -> None:
    op.drop_index('ix_provider_events_unapplied', table_name='provider_events')
    op.create_index('ix_provider_events_outcome', 'provider_events', ['outcome'])
    op.create_index('ix_provider_events_touch', 'provider_events', ['touch_id'])
