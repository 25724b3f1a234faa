"""results: first-touch source/UTM on leads, deal amount on transitions, campaign status
(deliverability pauses), marketing costs per source/UTM campaign and period

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 16:40:00
"""
from alembic import op
import sqlalchemy as sa
import lead_store.tables


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = lead_store.tables.UTCDateTime(timezone=True)
FIRST = ("source", "utm_source", "utm_medium", "utm_campaign")


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as b:
        b.add_column(sa.Column('first_source', sa.String(length=100), nullable=True))
        b.add_column(sa.Column('first_utm_source', sa.String(length=200), nullable=True))
        b.add_column(sa.Column('first_utm_medium', sa.String(length=200), nullable=True))
        b.add_column(sa.Column('first_utm_campaign', sa.String(length=200), nullable=True))
    # the best we know for leads imported before: their current values
    op.execute("UPDATE leads SET " + ", ".join(f"first_{c} = {c}" for c in FIRST)
               + ", version = version + 1")
    with op.batch_alter_table('transitions', schema=None) as b:
        b.add_column(sa.Column('amount', sa.Float(), nullable=True))
    op.create_table(
        'campaign_status',
        sa.Column('campaign', sa.String(length=100), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('version', sa.Integer(), server_default='0', nullable=False),
        sa.Column('pauses', sa.Integer(), server_default='0', nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('metrics', sa.JSON(), nullable=True),
        sa.Column('paused_at', UTC, nullable=True),
        sa.Column('paused_by', sa.String(length=200), nullable=True),
        sa.Column('resumed_at', UTC, nullable=True),
        sa.Column('resumed_by', sa.String(length=200), nullable=True),
        sa.Column('event_emitted_at', UTC, nullable=True),
        sa.PrimaryKeyConstraint('campaign', name=op.f('pk_campaign_status')))
    op.create_table(
        'source_costs',
        sa.Column('id', Id, autoincrement=True, nullable=False),
        sa.Column('source', sa.String(length=100), server_default='', nullable=False),
        sa.Column('utm_campaign', sa.String(length=200), server_default='', nullable=False),
        sa.Column('period_start', UTC, nullable=False),
        sa.Column('period_end', UTC, nullable=False),
        sa.Column('amount', sa.Float(), nullable=False),
        sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False),
        sa.Column('imported_at', UTC, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_source_costs')),
        sa.UniqueConstraint('source', 'utm_campaign', 'period_start', 'period_end',
                            name='uq_source_costs_period'))


def downgrade() -> None:
    op.drop_table('source_costs')
    op.drop_table('campaign_status')
    with op.batch_alter_table('transitions', schema=None) as b:
        b.drop_column('amount')
    with op.batch_alter_table('leads', schema=None) as b:
        for c in reversed(FIRST):
            b.drop_column(f'first_{c}')
