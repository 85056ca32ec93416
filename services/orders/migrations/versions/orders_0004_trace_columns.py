"""trace columns

Nothing of this database's own: it brings in the platform's trace columns
(mesh_0003, on the outbox and the request keys), so that the database's version
stays this one revision.

Revision ID: orders_0004
Revises: orders_0003
Create Date: 2026-12-05 03:19:29.589119
"""


revision = 'orders_0004'
down_revision = 'orders_0003'
branch_labels = None
depends_on = 'mesh_0003'


def upgrade():
    pass


def downgrade():
    pass
