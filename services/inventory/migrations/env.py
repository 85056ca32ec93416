"""Alembic environment of the inventory database (see mesh.migrations)."""
from mesh.migrations import run_env
from services.inventory.models import Base

run_env(Base.metadata)
