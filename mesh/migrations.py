"""Alembic for each service's own database, driven from code (no alembic.ini)."""
import importlib.util
import os

from alembic import command
from alembic.config import Config

from mesh.db import database_url, make_engine

__all__ = ["alembic_config", "upgrade", "run_env", "migrations_dir"]


def migrations_dir(service_path):
    """`services.accounts.service:AccountsService` → its package's `migrations/`.

    None for a service that is a top-level module (the gateway keeps no data).
    """
    module = service_path.split(":")[0]
    if "." not in module:
        return None
    spec = importlib.util.find_spec(module.rsplit(".", 1)[0])
    return os.path.join(spec.submodule_search_locations[0], "migrations")


def alembic_config(config, service):
    """An Alembic config for `service`, or None when it keeps no database."""
    location = migrations_dir(config["SERVICES"][service])
    if location is None or not os.path.isdir(location):
        return None
    cfg = Config()
    cfg.set_main_option("script_location", location)
    cfg.attributes["url"] = database_url(config, service)
    return cfg


def upgrade(config, service, revision="head"):
    """Bring `service`'s schema up to `revision`; returns False when it has none."""
    cfg = alembic_config(config, service)
    if cfg is None:
        return False
    engine = make_engine(cfg.attributes["url"])
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()
    return True


def run_env(metadata):
    """The body of every service's `migrations/env.py`."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:  # `alembic` run by hand, offline
        context.configure(url=context.config.attributes["url"],
                          target_metadata=metadata, literal_binds=True,
                          render_as_batch=True)
    else:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
