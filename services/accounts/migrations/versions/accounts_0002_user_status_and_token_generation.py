"""user status and token generation

Every existing user is active, with generation 0 (what tokens issued before this
revision are read as, so they keep working). A deleted user keeps its row
without personal data, so its email becomes nullable.

Revision ID: accounts_0002
Revises: accounts_0001
Create Date: 2026-11-27 09:20:26.198464
"""
from alembic import op
import sqlalchemy as sa


revision = 'accounts_0002'
down_revision = 'accounts_0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), server_default='active', nullable=False))
        batch_op.add_column(sa.Column('token_version', sa.Integer(), server_default='0', nullable=False))
        batch_op.alter_column('email',
               existing_type=sa.VARCHAR(length=254),
               nullable=True)
        batch_op.create_check_constraint(
            'status_known', "status IN ('active', 'disabled', 'deleted')")


def downgrade():
    # the older schema has no place for a deleted user's row (its email is
    # NULL) nor for a disabled one: the first are dropped, the second are active
    op.execute("DELETE FROM users WHERE status = 'deleted'")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('status_known', type_='check')
        batch_op.alter_column('email',
               existing_type=sa.VARCHAR(length=254),
               nullable=False)
        batch_op.drop_column('token_version')
        batch_op.drop_column('status')
