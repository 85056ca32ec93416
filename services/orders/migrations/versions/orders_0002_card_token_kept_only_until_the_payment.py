"""card token kept only until the payment

An order's card token is NULL once its payment is captured or the order
rejected, and a published `payment_requested` keeps no token in the outbox:
this makes the column nullable and scrubs what earlier releases kept.

Revision ID: orders_0002
Revises: orders_0001
Create Date: 2026-11-27 09:22:35.580921
"""
import json

from alembic import op
import sqlalchemy as sa


revision = 'orders_0002'
down_revision = 'orders_0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.alter_column('card_token',
               existing_type=sa.VARCHAR(length=80),
               nullable=True)
    # only a pending order's payment may still be asked for
    op.execute("UPDATE orders SET card_token = NULL WHERE status != 'pending'")
    conn = op.get_bind()
    published = conn.execute(sa.text(
        "SELECT id, data FROM outbox WHERE type = 'payment_requested' "
        "AND published_at IS NOT NULL")).all()
    for row_id, data in published:
        payload = json.loads(data)
        if payload.pop('card_token', None) is not None:
            conn.execute(sa.text("UPDATE outbox SET data = :data WHERE id = :id"),
                         {"data": json.dumps(payload, separators=(",", ":")), "id": row_id})


def downgrade():
    # a scrubbed token is gone; the older schema only needs the column filled
    op.execute("UPDATE orders SET card_token = '' WHERE card_token IS NULL")
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.alter_column('card_token',
               existing_type=sa.VARCHAR(length=80),
               nullable=False)
