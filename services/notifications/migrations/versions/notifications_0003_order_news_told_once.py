"""order news told once

A unique key on (order_id, kind), for the rows that have an order: two
announcements of one outcome handled at once could both find it untold and tell
the user twice, which earlier releases did. The first of such copies is kept
and the later ones deleted, so that the key can be made.

Revision ID: notifications_0003
Revises: notifications_0002
Create Date: 2026-12-04 17:29:45.842151
"""
from alembic import op
import sqlalchemy as sa


revision = 'notifications_0003'
down_revision = 'notifications_0002'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("DELETE FROM notifications WHERE order_id IS NOT NULL AND id NOT IN ("
               "SELECT MIN(id) FROM notifications WHERE order_id IS NOT NULL "
               "GROUP BY order_id, kind)")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('one_per_order_and_kind', ['order_id', 'kind'], unique=True, sqlite_where=sa.text('order_id IS NOT NULL'), postgresql_where=sa.text('order_id IS NOT NULL'))


def downgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('one_per_order_and_kind')
