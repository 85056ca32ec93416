"""trace columns: outbox.written_by, rpc_requests.request_id and method

What `mesh trace` reads to tell which entrypoint recorded an event and which
request a keyed RPC served. Written by inserts that run anyway: nothing more on
the hot path. Rows from before have them NULL.

Revision ID: mesh_0003
Revises: mesh_0002
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op


revision = 'mesh_0003'
down_revision = 'mesh_0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('written_by', sa.String(length=100), nullable=True))
    with op.batch_alter_table('rpc_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('method', sa.String(length=100), nullable=True))


def downgrade():
    with op.batch_alter_table('rpc_requests', schema=None) as batch_op:
        batch_op.drop_column('method')
        batch_op.drop_column('request_id')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('written_by')
