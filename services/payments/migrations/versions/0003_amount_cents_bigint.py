"""money totals beyond 32 bits: payments.amount_cents becomes BIGINT (contracts.base.MAX_TOTAL_CENTS)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.alter_column('amount_cents', existing_type=sa.Integer(), type_=sa.BigInteger(),
                              existing_nullable=False)


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.alter_column('amount_cents', existing_type=sa.BigInteger(), type_=sa.Integer(),
                              existing_nullable=False)
