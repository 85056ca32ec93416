"""Alembic environment of the notifications database (see mesh.migrations)."""
from mesh.migrations import run_env
from services.notifications.models import Base

run_env(Base.metadata)
