"""trace columns

Nothing of this database's own: it brings in the platform's trace columns
(mesh_0003, on the outbox and the request keys), so that the database's version
stays this one revision.

Revision ID: accounts_0004
Revises: accounts_0003
Create Date: 2026-12-05 03:19:27.309344
"""


revision = 'accounts_0004'
down_revision = 'accounts_0003'
branch_labels = None
depends_on = 'mesh_0003'


def upgrade():
    pass


def downgrade():
    pass
