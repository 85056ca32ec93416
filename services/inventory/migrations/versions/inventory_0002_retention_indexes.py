"""retention indexes

Nothing of this database's own: it brings in the platform's retention indexes
(mesh_0002, on the inbox and the request keys), so that the database's version
stays this one revision.

Revision ID: inventory_0002
Revises: inventory_0001
Create Date: 2026-12-04 17:32:42.307043
"""


revision = 'inventory_0002'
down_revision = 'inventory_0001'
branch_labels = None
depends_on = 'mesh_0002'


def upgrade():
    pass


def downgrade():
    pass
