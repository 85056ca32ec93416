"""Alembic environment of the accounts database (see mesh.migrations)."""
from mesh.migrations import run_env
from services.accounts.models import Base

run_env(Base.metadata)
