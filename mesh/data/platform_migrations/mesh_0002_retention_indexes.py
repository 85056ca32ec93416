"""retention indexes: inbox.processed_at, rpc_requests.applied_at

The pruner finds the rows past their retention by these columns; without an
index each round read the whole table. (The outbox's published rows are found
by ix_outbox_unpublished.) Each service's history names this revision in the
revision that needs it, so a database's version stays one revision.

Revision ID: mesh_0002
Revises: mesh_0001
Create Date: 2026-12-04
"""
from alembic import op


revision = 'mesh_0002'
down_revision = 'mesh_0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_processed_at', ['processed_at'], unique=False)
    with op.batch_alter_table('rpc_requests', schema=None) as batch_op:
        batch_op.create_index('ix_rpc_requests_applied_at', ['applied_at'], unique=False)


def downgrade():
    with op.batch_alter_table('rpc_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_rpc_requests_applied_at')
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_processed_at')
