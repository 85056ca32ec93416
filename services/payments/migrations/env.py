"""Alembic environment of the payments database (see mesh.migrations)."""
from mesh.migrations import run_env
from services.payments.models import Base

run_env(Base.metadata)
