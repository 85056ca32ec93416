"""the inventory database's own tables: products and their reservations

Replaces the inventory revisions 0001, 0002, 0003, 0004, which also made the platform's
tables (now the mesh branch's, which this depends on).

Revision ID: inventory_0001
Revises:
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = 'inventory_0001'
down_revision = None
branch_labels = ('inventory',)  # `inventory@head`, `inventory@-1` name this history
depends_on = 'mesh_0001'
replaces = ('0001', '0002', '0003', '0004')


def upgrade():
    op.create_table('products',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('price_cents', sa.Integer(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('price_cents > 0', name='price_positive'),
    sa.CheckConstraint('stock >= 0', name='stock_not_negative'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sku')
    )
    op.create_table('reservations',
    sa.Column('order_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('short_product_ids', sa.String(length=1024), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("status IN ('reserved', 'rejected', 'committed', 'released')", name='status_known'),
    sa.PrimaryKeyConstraint('order_id')
    )
    op.create_table('reservation_lines',
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.CheckConstraint('quantity > 0', name='quantity_positive'),
    sa.ForeignKeyConstraint(['order_id'], ['reservations.order_id'], ),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], ),
    sa.PrimaryKeyConstraint('order_id', 'product_id')
    )


def downgrade():
    op.drop_table('reservation_lines')
    op.drop_table('reservations')
    op.drop_table('products')
