"""retention indexes

Nothing of this database's own: it brings in the platform's retention indexes
(mesh_0002, on the inbox and the request keys), so that the database's version
stays this one revision.

Revision ID: accounts_0003
Revises: accounts_0002
Create Date: 2026-12-04 17:32:41.415687
"""


revision = 'accounts_0003'
down_revision = 'accounts_0002'
branch_labels = None
depends_on = 'mesh_0002'


def upgrade():
    pass


def downgrade():
    pass
