"""trace columns

Nothing of this database's own: it brings in the platform's trace columns
(mesh_0003, on the outbox and the request keys), so that the database's version
stays this one revision.

Revision ID: payments_0003
Revises: payments_0002
Create Date: 2026-12-05 03:19:30.328311
"""


revision = 'payments_0003'
down_revision = 'payments_0002'
branch_labels = None
depends_on = 'mesh_0003'


def upgrade():
    pass


def downgrade():
    pass
