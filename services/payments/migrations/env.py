"""Alembic environment of the payments database (see mesh.data.migrations)."""
from mesh.data.migrations import run_env
from services.payments.models import Base

run_env(Base.metadata)
