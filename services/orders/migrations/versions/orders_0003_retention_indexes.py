"""retention indexes

Forgetting Idempotency-Keys looks for orders that still keep one and have not
moved for a day: the partial index holds only those, where the index on
updated_at also holds every older order whose key is already forgotten (most of
the table, in time). Depends on the platform's retention indexes (mesh_0002).

Revision ID: orders_0003
Revises: orders_0002
Create Date: 2026-12-04 17:32:37.659152
"""
from alembic import op
import sqlalchemy as sa


revision = 'orders_0003'
down_revision = 'orders_0002'
branch_labels = None
depends_on = 'mesh_0002'


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_updated_at_keyed', ['updated_at'], unique=False, sqlite_where=sa.text('idempotency_key IS NOT NULL'), postgresql_where=sa.text('idempotency_key IS NOT NULL'))


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_updated_at_keyed')
