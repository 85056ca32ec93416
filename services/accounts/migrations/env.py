"""Alembic environment of the accounts database (see mesh.data.migrations)."""
from mesh.data.migrations import run_env
from services.accounts.models import Base

run_env(Base.metadata)
