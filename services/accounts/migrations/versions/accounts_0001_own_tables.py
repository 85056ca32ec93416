"""the accounts database's own tables: users

Replaces the accounts revisions 0001, 0002, 0003, which also made the platform's
tables (now the mesh branch's, which this depends on).

Revision ID: accounts_0001
Revises:
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = 'accounts_0001'
down_revision = None
branch_labels = ('accounts',)  # `accounts@head`, `accounts@-1` name this history
depends_on = 'mesh_0001'
replaces = ('0001', '0002', '0003')


def upgrade():
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("role IN ('customer', 'admin')", name='role_known'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )


def downgrade():
    op.drop_table('users')
