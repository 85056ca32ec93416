"""forgotten users

Revision ID: notifications_0002
Revises: notifications_0001
Create Date: 2026-11-27 09:21:54.791239
"""
from alembic import op
import sqlalchemy as sa


revision = 'notifications_0002'
down_revision = 'notifications_0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('forgotten_users',
    sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('forgotten_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('user_id')
    )


def downgrade():
    op.drop_table('forgotten_users')
