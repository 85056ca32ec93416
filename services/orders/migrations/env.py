"""Alembic environment of the orders database (see mesh.migrations)."""
from mesh.migrations import run_env
from services.orders.models import Base

run_env(Base.metadata)
