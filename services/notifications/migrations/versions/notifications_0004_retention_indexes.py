"""retention indexes

Nothing of this database's own: it brings in the platform's retention indexes
(mesh_0002, on the inbox and the request keys), so that the database's version
stays this one revision.

Revision ID: notifications_0004
Revises: notifications_0003
Create Date: 2026-12-04 17:32:43.941176
"""


revision = 'notifications_0004'
down_revision = 'notifications_0003'
branch_labels = None
depends_on = 'mesh_0002'


def upgrade():
    pass


def downgrade():
    pass
