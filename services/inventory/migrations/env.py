"""Alembic environment of the inventory database (see mesh.data.migrations)."""
from mesh.data.migrations import run_env
from services.inventory.models import Base

run_env(Base.metadata)
