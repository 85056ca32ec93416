"""the platform's tables: outbox, inbox, rpc_requests (each created where absent)

Before this branch, each service's own history created the platform tables it
used, in the shape declared here; such a database keeps its tables and rows, and
gets only the ones it lacked.

Revision ID: mesh_0001
Revises:
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = 'mesh_0001'
down_revision = None
branch_labels = ('mesh',)
depends_on = None


def upgrade():
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'outbox' not in existing:
        op.create_table('outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('type', sa.String(length=100), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('occurred_at', sa.DateTime(), nullable=False),
        sa.Column('correlation_id', sa.String(length=64), nullable=True),
        sa.Column('traceparent', sa.String(length=55), nullable=True),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('published_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_id')
        )
        op.create_index('ix_outbox_unpublished', 'outbox', ['published_at', 'id'],
                        unique=False)
    if 'inbox' not in existing:
        op.create_table('inbox',
        sa.Column('handler', sa.String(length=200), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('processed_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('handler', 'event_id')
        )
    if 'rpc_requests' not in existing:
        op.create_table('rpc_requests',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('applied_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key')
        )


def downgrade():
    op.drop_table('rpc_requests')
    op.drop_table('inbox')
    op.drop_index('ix_outbox_unpublished', table_name='outbox')
    op.drop_table('outbox')
