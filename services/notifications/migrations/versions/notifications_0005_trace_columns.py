"""trace columns

Nothing of this database's own: it brings in the platform's trace columns
(mesh_0003, on the outbox and the request keys), so that the database's version
stays this one revision.

Revision ID: notifications_0005
Revises: notifications_0004
Create Date: 2026-12-05 03:19:28.812234
"""


revision = 'notifications_0005'
down_revision = 'notifications_0004'
branch_labels = None
depends_on = 'mesh_0003'


def upgrade():
    pass


def downgrade():
    pass
