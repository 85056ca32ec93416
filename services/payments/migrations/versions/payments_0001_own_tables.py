"""the payments database's own tables: payments

Replaces the payments revisions 0001, 0002, 0003, which also made the platform's
tables (now the mesh branch's, which this depends on).

Revision ID: payments_0001
Revises:
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = 'payments_0001'
down_revision = None
branch_labels = ('payments',)  # `payments@head`, `payments@-1` name this history
depends_on = 'mesh_0001'
replaces = ('0001', '0002', '0003')


def upgrade():
    op.create_table('payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider_ref', sa.String(length=100), nullable=True),
    sa.Column('decline_reason', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("status IN ('captured', 'declined', 'refunded')", name='status_known'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('order_id')
    )


def downgrade():
    op.drop_table('payments')
