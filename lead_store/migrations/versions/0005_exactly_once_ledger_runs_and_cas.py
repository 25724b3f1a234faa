"""exactly once: touch ownership and retries, run registry, lead versions, one open handoff
per lead, lead events outbox, per-event webhook outcomes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 16:05:00
"""
from alembic import op
import sqlalchemy as sa
import lead_store.tables


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = lead_store.tables.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as b:
        b.add_column(sa.Column('version', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('touches', schema=None) as b:
        b.add_column(sa.Column('run_id', Id, nullable=True))
        b.add_column(sa.Column('retry_at', UTC, nullable=True))
        b.add_column(sa.Column('provider_batch_id', sa.String(length=100), nullable=True))
    # the old name of "in doubt"
    op.execute("UPDATE touches SET status = 'in_doubt' WHERE status = 'unknown'")

    with op.batch_alter_table('transitions', schema=None) as b:
        b.add_column(sa.Column('handoff_id', Id, nullable=True))
        b.create_index('uq_transitions_handoff', ['handoff_id'], unique=True)

    # older versions could open two handoffs for one lead (concurrent runs): keep the newest
    # open one, close the others as duplicates, before the constraint goes on
    op.execute("""
        UPDATE handoffs SET status = 'expired', outcome_reason = 'duplicate'
        WHERE status = 'pending' AND id NOT IN (
            SELECT max_id FROM (SELECT max(id) AS max_id FROM handoffs
                                WHERE status = 'pending' GROUP BY lead_id) AS keep)""")
    with op.batch_alter_table('handoffs', schema=None) as b:
        b.add_column(sa.Column('crm_claimed_by', Id, nullable=True))
        b.add_column(sa.Column('crm_claimed_at', UTC, nullable=True))
        b.create_index('uq_handoffs_open_lead', ['lead_id'], unique=True,
                       sqlite_where=sa.text("status = 'pending'"),
                       postgresql_where=sa.text("status = 'pending'"))

    op.create_table(
        'runs',
        sa.Column('id', Id, autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('host', sa.String(length=200), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('as_of', UTC, nullable=True),
        sa.Column('started_at', UTC, nullable=False),
        sa.Column('heartbeat_at', UTC, nullable=False),
        sa.Column('finished_at', UTC, nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_runs')))
    op.create_index('ix_runs_status_heartbeat', 'runs', ['status', 'heartbeat_at'])
    op.drop_table('cycle_runs')  # never used; `runs` replaces it

    op.create_table(
        'lead_events',
        sa.Column('id', Id, autoincrement=True, nullable=False),
        sa.Column('lead_id', Id, nullable=False),
        sa.Column('transition_id', Id, nullable=True),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('claimed_by', Id, nullable=True),
        sa.Column('claimed_at', UTC, nullable=True),
        sa.Column('emitted_at', UTC, nullable=True),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'],
                                name=op.f('fk_lead_events_lead_id_leads'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_events')),
        sa.UniqueConstraint('transition_id', name=op.f('uq_lead_events_transition_id')))
    op.create_index('ix_lead_events_pending', 'lead_events', ['emitted_at', 'id'])

    with op.batch_alter_table('webhook_batches', schema=None) as b:
        b.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('provider_events', schema=None) as b:
        b.add_column(sa.Column('error', sa.Text(), nullable=True))
        b.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        b.create_index('ix_provider_events_outcome', ['outcome'])


def downgrade() -> None:
    with op.batch_alter_table('provider_events', schema=None) as b:
        b.drop_index('ix_provider_events_outcome')
        b.drop_column('attempts')
        b.drop_column('error')
    with op.batch_alter_table('webhook_batches', schema=None) as b:
        b.drop_column('attempts')
    op.drop_index('ix_lead_events_pending', table_name='lead_events')
    op.drop_table('lead_events')
    op.create_table(
        'cycle_runs',
        sa.Column('id', Id, autoincrement=True, nullable=False),
        sa.Column('as_of', UTC, nullable=False),
        sa.Column('started_at', UTC, nullable=False),
        sa.Column('finished_at', UTC, nullable=True),
        sa.Column('dry_run', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('summary', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cycle_runs')))
    op.drop_index('ix_runs_status_heartbeat', table_name='runs')
    op.drop_table('runs')
    with op.batch_alter_table('handoffs', schema=None) as b:
        b.drop_index('uq_handoffs_open_lead')
        b.drop_column('crm_claimed_at')
        b.drop_column('crm_claimed_by')
    with op.batch_alter_table('transitions', schema=None) as b:
        b.drop_index('uq_transitions_handoff')
        b.drop_column('handoff_id')
    op.execute("UPDATE touches SET status = 'unknown' WHERE status = 'in_doubt'")
    with op.batch_alter_table('touches', schema=None) as b:
        b.drop_column('provider_batch_id')
        b.drop_column('retry_at')
        b.drop_column('run_id')
    with op.batch_alter_table('leads', schema=None) as b:
        b.drop_column('version')
