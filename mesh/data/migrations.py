"""Alembic for each service's own database, driven from code (no alembic.ini).

A service's history (its `migrations/versions/`) holds only its own tables; its
first revision depends on the `mesh` branch (`mesh/data/platform_migrations/`), which
holds the platform's (mesh.data.tables). `upgrade` brings both to their heads.

A revision may replace a squashed run of older ones (``replaces = ("0001",
"0002")``, oldest first, as Django's squashed migrations do): a database
stamped with the last of them is adopted in place, its tables and rows kept.

On PostgreSQL an upgrade holds an advisory lock named after the service, so replicas (or a Job and a replica) starting together take turns:
the first migrates, the others then find the schema at its head.
"""
import importlib.util
import os
import sys
import tempfile

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import make_url, text
from sqlalchemy.exc import OperationalError

from mesh.core.config import database_setting
from mesh.data import tables
from mesh.data.db import advisory_key, database_url, make_engine

__all__ = ["alembic_config", "upgrade", "upgrade_or_exit", "run_env", "migrations_dir",
           "migration_lock_key", "revision", "downgrade", "current", "history",
           "PLATFORM_VERSIONS"]

PLATFORM_VERSIONS = os.path.join(os.path.dirname(__file__), "platform_migrations")


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
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(
        [os.path.join(location, "versions"), PLATFORM_VERSIONS]))
    cfg.attributes["url"] = database_url(config, service)
    return cfg


def _migrating(cfg, service, url=None):
    """A context: `cfg` bound to one transaction on `service`'s database (or
    `url`), holding the service's advisory lock on PostgreSQL until it ends."""
    import contextlib

    @contextlib.contextmanager
    def bound():
        engine = make_engine(url or cfg.attributes["url"])
        key = {"key": migration_lock_key(service)}
        try:
            with engine.connect() as connection:
                # a session lock, not a transaction's: a migration that commits
                # part-way (autocommit_block) still holds it until the unlock
                locking = connection.dialect.name == "postgresql"
                sqlite = connection.dialect.name == "sqlite"
                if locking:
                    connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
                    connection.commit()
                if sqlite:
                    # SQLite alters a column by copying its table, dropping the
                    # old one and renaming the copy, which a foreign key pointing
                    # at it refuses: they are checked once, at the end, instead
                    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                    connection.commit()
                try:
                    with connection.begin():
                        cfg.attributes["connection"] = connection
                        yield connection
                        if sqlite and connection.exec_driver_sql(
                                "PRAGMA foreign_key_check").first() is not None:
                            raise CommandError("the migration left rows whose foreign "
                                               "key points nowhere; nothing was changed")
                finally:
                    if locking and not connection.invalidated:
                        connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
                        connection.commit()
                    if sqlite and not connection.invalidated:
                        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                        connection.commit()
        finally:
            cfg.attributes.pop("connection", None)
            engine.dispose()
    return bound()


def upgrade(config, service, revision="heads"):
    """Bring `service`'s schema up to `revision`; returns False when it has none."""
    cfg = alembic_config(config, service)
    if cfg is None:
        return False
    with _migrating(cfg, service) as connection:
        _adopt_squashed(cfg, connection)
        command.upgrade(cfg, revision)
    return True


def _required(config, service):
    cfg = alembic_config(config, service)
    if cfg is None:
        raise CommandError(f"{service} keeps no database (it has no migrations/)")
    return cfg


def _own_revisions(cfg, service):
    """The service's own revisions (not the `mesh` branch's), newest first."""
    versions = os.path.realpath(os.path.join(cfg.get_main_option("script_location"),
                                             "versions"))
    return [script for script in ScriptDirectory.from_config(cfg).walk_revisions()
            if os.path.realpath(os.path.dirname(script.path)) == versions]


def revision(config, service, message, autogenerate=True):
    """Write the service's next revision, and return its path: with
    `autogenerate`, what its models have that its history does not make yet
    (compared on a scratch SQLite database brought to the current heads, so no
    real database is read or changed); review it before committing it.

    A service's first revision carries its name as a branch label
    (`orders@head`, `orders@-1`); the first, and the first after the `mesh`
    branch moved on, depends on that branch's head."""
    cfg = _required(config, service)
    own = _own_revisions(cfg, service)
    numbers = [int(s.revision.rsplit("_", 1)[1]) for s in own
               if s.revision.rsplit("_", 1)[-1].isdigit()]
    options = {"rev_id": f"{service}_{max(numbers, default=0) + 1:04d}",
               "version_path": os.path.join(cfg.get_main_option("script_location"),
                                            "versions")}
    if own:
        options["head"] = own[0].revision
    else:
        options.update(head="base", branch_label=service)
    platform = ScriptDirectory.from_config(cfg).get_revision("mesh@head").revision
    if not any(platform in _dependencies(script) for script in own):
        # the platform's head, had through the service's own head: a database's
        # version stays one revision, not one of each branch
        options["depends_on"] = platform
    with tempfile.TemporaryDirectory() as scratch:
        with _migrating(cfg, service, f"sqlite:///{scratch}/scratch.sqlite"):
            command.upgrade(cfg, "heads")
            script = command.revision(cfg, message=message, autogenerate=autogenerate,
                                      **options)
    return script.path


def _dependencies(script):
    depends = script.dependencies or ()
    return (depends,) if isinstance(depends, str) else tuple(depends)


def downgrade(config, service, target):
    """Take `service`'s schema down to `target` (`orders@-1`, `orders_0001`,
    `orders@base`): its own history only, the `mesh` branch stays."""
    cfg = _required(config, service)
    if not (target.startswith(f"{service}@") or target.startswith(f"{service}_")):
        raise CommandError(f"name a revision of {service}'s own history, e.g. "
                           f"{service}@-1, {service}@base or {service}_0001")
    with _migrating(cfg, service):
        command.downgrade(cfg, target)


def current(config, service):
    """The revisions `service`'s database is at (empty: none yet)."""
    cfg = _required(config, service)
    engine = make_engine(cfg.attributes["url"])
    try:
        with engine.connect() as connection:
            return sorted(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def history(config, service):
    """`(revision, down revision, message)` of the service's own history, newest first."""
    return [(script.revision, script.down_revision, script.doc)
            for script in _own_revisions(_required(config, service), service)]


def migration_lock_key(service):
    """The advisory lock `upgrade` holds for `service` (a signed 64-bit number,
    the same in every process and release)."""
    return advisory_key(f"mesh migrate {service}")


def upgrade_or_exit(config, service):
    """`upgrade`, for the command line: a database it refuses, or cannot reach,
    ends the process with one line saying why (no traceback)."""
    try:
        return upgrade(config, service)
    except CommandError as exc:
        sys.exit(f"mesh: {service}: {exc}")
    except OperationalError as exc:
        # a restarting replica would otherwise print a hundred lines a second
        url = make_url(database_url(config, service)).render_as_string(hide_password=True)
        why = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        sys.exit(f"mesh: {service}: cannot open its database {url} ({database_setting(service)}"
                 f"): {why}. The operator creates each service's database; mesh migrate "
                 "then makes its tables")


def _adopt_squashed(cfg, connection):
    current = set(MigrationContext.configure(connection).get_current_heads())
    if not current:
        return
    for script in ScriptDirectory.from_config(cfg).walk_revisions():
        replaced = getattr(script.module, "replaces", ())
        if not current & set(replaced):
            continue
        if current != {replaced[-1]}:
            raise CommandError(
                f"this database is at revision {', '.join(sorted(current))}, older than "
                f"{replaced[-1]}, which {script.revision} replaces: upgrade it with a "
                f"mesh from before that squash first")
        # the replaced revisions are no longer there to resolve: forget them, make
        # the platform's tables that the old history did not, then record the squash
        command.stamp(cfg, "base", purge=True)
        command.upgrade(cfg, "mesh@head")
        command.stamp(cfg, script.revision)
        return


def _render_item(kind, obj, autogen_context):
    """Autogenerate writes a project type (a TypeDecorator such as UtcDateTime) as
    the plain SQLAlchemy type it stores, so a revision imports nothing of ours."""
    from sqlalchemy.types import TypeDecorator

    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def run_env(metadata):
    """The body of every service's `migrations/env.py`."""
    from alembic import context

    target = [metadata, tables.metadata]
    connection = context.config.attributes.get("connection")
    if connection is None:  # `alembic` run by hand, offline
        context.configure(url=context.config.attributes["url"],
                          target_metadata=target, literal_binds=True,
                          render_as_batch=True)
    else:
        context.configure(connection=connection, target_metadata=target,
                          render_as_batch=True, render_item=_render_item,
                          compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
