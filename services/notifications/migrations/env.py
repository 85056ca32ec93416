"""Alembic environment of the notifications database (see mesh.data.migrations)."""
from mesh.data.migrations import run_env
from services.notifications.models import Base

run_env(Base.metadata)
