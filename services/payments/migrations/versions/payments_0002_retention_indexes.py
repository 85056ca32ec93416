"""retention indexes

Nothing of this database's own: it brings in the platform's retention indexes
(mesh_0002, on the inbox and the request keys), so that the database's version
stays this one revision.

Revision ID: payments_0002
Revises: payments_0001
Create Date: 2026-12-04 17:32:43.219953
"""


revision = 'payments_0002'
down_revision = 'payments_0001'
branch_labels = None
depends_on = 'mesh_0002'


def upgrade():
    pass


def downgrade():
    pass
