"""Alembic environment of the orders database (see mesh.data.migrations)."""
from mesh.data.migrations import run_env
from services.orders.models import Base

run_env(Base.metadata)
