"""Every service's schema comes from its own history plus the platform's `mesh`
branch; a database made before that split upgrades in place."""
import importlib
import os
import pathlib
import json
import shutil
import sqlite3
import subprocess
import sys

import psycopg2
import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError

from mesh.data import migrations, tables
from mesh.data.db import make_engine
from mesh.testing import load_test_config

SERVICES = ["accounts", "inventory", "orders", "payments", "notifications"]
# SQLite files made by `make run` at 3431f08, the last commit whose service
# histories still made the platform's tables: an order confirmed, one declined,
# one cancelled (dumped with sqlite3's iterdump)
BEFORE = pathlib.Path(__file__).parent / "data" / "before_mesh_branch"


def config_for(tmp_path, **overrides):
    return load_test_config("config.yaml", MESH_DATA_DIR=tmp_path, **overrides)


def schema_drift(url, service):
    """What the migrated database lacks or has beyond the models (empty: none)."""
    models = importlib.import_module(f"services.{service}.models")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, [models.Base.metadata, tables.metadata])
    finally:
        engine.dispose()


def rows_of(path):
    with sqlite3.connect(path) as conn:
        names = [n for (n,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name != 'alembic_version' ORDER BY name")]
        return {name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall())
                for name in names}


def head(config, service):
    return migrations.history(config, service)[0][0]


def scrubbed(service, rows):
    """`rows` as orders_0002 leaves them: no card token on a settled order nor in
    a published payment_requested (the rest unchanged)."""
    if service != "orders":
        return rows
    orders = [(*row[:5], None if row[2] != "pending" else row[5], *row[6:])
              for row in rows["orders"]]
    outbox = [(*row[:6], json.dumps({k: v for k, v in json.loads(row[6]).items()
                                     if k != "card_token"}, separators=(",", ":")),
               *row[7:]) if row[2] == "payment_requested" and row[7] else row
              for row in rows["outbox"]]
    assert orders != rows["orders"] and outbox != rows["outbox"], "tokens to scrub"
    return {**rows, "orders": sorted(orders), "outbox": sorted(outbox)}


def versions_of(path):
    with sqlite3.connect(path) as conn:
        return {v for (v,) in conn.execute("SELECT version_num FROM alembic_version")}


@pytest.mark.parametrize("service", SERVICES)
def test_a_new_database_gets_the_models_and_the_platform_tables(tmp_path, service):
    config = config_for(tmp_path)
    assert migrations.upgrade(config, service)
    url = f"sqlite:///{tmp_path}/{service}.sqlite"
    assert schema_drift(url, service) == []
    assert versions_of(tmp_path / f"{service}.sqlite") == {head(config, service)}


@pytest.mark.postgres
def test_a_new_postgres_database_gets_the_models_and_the_platform_tables(
        tmp_path, postgres_databases):
    for service in SERVICES:
        url = postgres_databases(f"migrate_{service}")
        config = config_for(tmp_path, **{f"DATABASE_URL_{service.upper()}": url})
        migrations.upgrade(config, service)
        assert schema_drift(url, service) == [], service


@pytest.mark.parametrize("service", SERVICES)
def test_a_database_made_before_the_mesh_branch_upgrades_in_place(tmp_path, service):
    path = tmp_path / f"{service}.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript((BEFORE / f"{service}.sql").read_text())
    before = rows_of(path)
    assert any(before.values()), "the dump holds rows"

    config = config_for(tmp_path)
    migrations.upgrade(config, service)
    migrations.upgrade(config, service)  # a second start finds nothing to do

    after = rows_of(path)
    for table, rows in scrubbed(service, before).items():
        # columns added since are at the end of each row: the old ones kept as they were
        assert [row[:len(rows[0])] for row in after[table]] == rows, table
    if service == "accounts":  # every user there is active, their tokens still good
        assert {row[-2:] for row in after["users"]} == {("active", 0)}
    # what the old history never made is made now; nothing else changed
    assert set(after) - set(before) <= {"outbox", "inbox", "rpc_requests",
                                        "forgotten_users"}
    assert {"outbox", "inbox", "rpc_requests"} <= set(after)
    assert versions_of(path) == {head(config, service)}
    assert schema_drift(f"sqlite:///{path}", service) == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.postgres)])
def test_a_user_told_twice_before_the_unique_key_keeps_the_first_message(
        request, tmp_path, backend):
    overrides = {}
    if backend == "postgresql":
        overrides["DATABASE_URL_NOTIFICATIONS"] = request.getfixturevalue(
            "postgres_databases")("told_twice")
    config = config_for(tmp_path, **overrides)
    migrations.upgrade(config, "notifications", "notifications_0002")
    engine = make_engine(migrations.alembic_config(config, "notifications").attributes["url"])
    told = [("welcome", None, "w1"), ("welcome", None, "w2"),  # two users' welcomes
            ("order_rejected", 41, "r1"), ("order_rejected", 41, "r2"),
            ("order_confirmed", 41, "c1"), ("order_rejected", 42, "r3")]
    try:
        with engine.begin() as conn:
            for kind, order_id, event_id in told:
                conn.execute(sqlalchemy.text(
                    "INSERT INTO notifications (user_id, kind, subject, body, order_id, "
                    "event_id, created_at) VALUES (1, :kind, 's', 'b', :order_id, "
                    ":event_id, '2026-11-27 10:00:00')"),
                    {"kind": kind, "order_id": order_id, "event_id": event_id})
        migrations.upgrade(config, "notifications")
        with engine.connect() as conn:
            kept = conn.scalars(sqlalchemy.text(
                "SELECT event_id FROM notifications ORDER BY id")).all()
    finally:
        engine.dispose()
    assert kept == ["w1", "w2", "r1", "c1", "r3"]


def test_a_database_older_than_the_squash_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "orders.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript((BEFORE / "orders.sql").read_text())
        conn.execute("UPDATE alembic_version SET version_num = '0002'")
    before = rows_of(path)

    with pytest.raises(CommandError, match="at revision 0002, older than 0003"):
        migrations.upgrade(config_for(tmp_path), "orders")
    assert rows_of(path) == before
    assert versions_of(path) == {"0002"}


def test_the_platform_tables_are_declared_once():
    for service in SERVICES:
        models = importlib.import_module(f"services.{service}.models")
        assert not set(models.Base.metadata.tables) & set(tables.metadata.tables), service
        versions = pathlib.Path(models.__file__).parent / "migrations" / "versions"
        for revision in versions.glob("*.py"):
            text = revision.read_text()
            for table in tables.metadata.tables:
                assert f"'{table}'" not in text, (revision.name, table)


def _migrate(tmp_path, service, url):
    env = dict(os.environ, MESH_DATA_DIR=str(tmp_path),
               **{f"DATABASE_URL_{service.upper()}": url})
    return subprocess.Popen([sys.executable, "-m", "mesh.ops.cli", "migrate", "--only",
                             service], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.postgres
def test_migrate_waits_for_the_advisory_lock_a_replica_holds(tmp_path, postgres_databases):
    url = postgres_databases("migrate_lock")
    holder = psycopg2.connect(url)
    holder.autocommit = True
    with holder.cursor() as cursor:  # as another replica's migration would hold it
        cursor.execute("SELECT pg_advisory_lock(%s)",
                       (migrations.migration_lock_key("orders"),))
    process = _migrate(tmp_path, "orders", url)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=3)
        with holder.cursor() as cursor:
            cursor.execute("SELECT to_regclass('alembic_version')")
            assert cursor.fetchone() == (None,), "migrated while the lock was held"
            cursor.execute("SELECT pg_advisory_unlock(%s)",
                           (migrations.migration_lock_key("orders"),))
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        holder.close()
    assert process.returncode == 0, output
    assert schema_drift(url, "orders") == []


@pytest.mark.postgres
def test_replicas_migrating_at_once_take_turns(tmp_path, postgres_databases):
    url = postgres_databases("migrate_race")
    processes = [_migrate(tmp_path, "inventory", url) for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, outputs
    assert schema_drift(url, "inventory") == []


def _copy_of_the_code(tmp_path):
    """The repository's importable code in `tmp_path`, first on PYTHONPATH: what a
    team edits (models, migrations) without touching this checkout."""
    root = pathlib.Path(__file__).resolve().parents[2]
    for name in ("contracts", "services", "mesh"):
        shutil.copytree(root / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("config.yaml", "gateway.py"):
        shutil.copy(root / name, tmp_path / name)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), MESH_DATA_DIR=str(tmp_path / "var"))
    env = {k: v for k, v in env.items() if not k.startswith("DATABASE_URL_")}

    def mesh(*args):
        return subprocess.run([sys.executable, "-m", "mesh.ops.cli", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
    return mesh


def test_revision_writes_what_a_model_change_needs_and_downgrade_takes_it_back(tmp_path):
    mesh = _copy_of_the_code(tmp_path)
    models = tmp_path / "services" / "notifications" / "models.py"
    models.write_text(models.read_text().replace(
        "    order_id: Mapped[int | None] = mapped_column(Integer)\n",
        "    order_id: Mapped[int | None] = mapped_column(Integer)\n"
        "    channel: Mapped[str | None] = mapped_column(String(16))\n"))
    assert mesh("migrate", "--only", "notifications").returncode == 0
    made = mesh("revision", "notifications", "-m", "add the channel")
    assert made.returncode == 0, made.stderr
    (written,) = (tmp_path / "services/notifications/migrations/versions").glob(
        "notifications_*_add_the_channel.py")
    before, number = head(config_for(tmp_path), "notifications"), written.name.split("_")[1]
    new = f"notifications_{number}"
    assert int(number) == int(before.split("_")[1]) + 1
    text = written.read_text()
    assert "add_column" in text and "'channel'" in text and "drop_column" in text
    assert f"down_revision = '{before}'" in text
    assert mesh("migrate", "--only", "notifications").returncode == 0
    url = f"sqlite:///{tmp_path}/var/notifications.sqlite"
    columns = lambda: {c["name"] for c in sqlalchemy.inspect(  # noqa: E731
        make_engine(url)).get_columns("notifications")}
    assert "channel" in columns()
    assert f"notifications: {new}" in mesh("current").stdout
    history = mesh("history", "notifications").stdout.splitlines()
    assert history[0] == f"{before} -> {new}: add the channel"
    back = mesh("downgrade", "notifications", "notifications@-1")
    assert back.returncode == 0, back.stderr
    assert "channel" not in columns()
    assert f"notifications: at {before}" in back.stdout


def test_a_revision_after_the_platform_moved_on_brings_its_head_in(tmp_path):
    mesh = _copy_of_the_code(tmp_path)
    platform = tmp_path / "mesh/data/platform_migrations"
    latest = max(path.name[:len("mesh_0000")] for path in platform.glob("mesh_0*.py"))
    (platform / "mesh_0099_later.py").write_text(
        f"revision = 'mesh_0099'\ndown_revision = '{latest}'\nbranch_labels = None\n"
        "depends_on = None\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n")
    made = mesh("revision", "payments", "-m", "later")
    assert made.returncode == 0, made.stderr
    (written,) = (tmp_path / "services/payments/migrations/versions").glob(
        "payments_*_later.py")
    assert "depends_on = 'mesh_0099'" in written.read_text()
    assert mesh("migrate", "--only", "payments").returncode == 0
    # one revision names the database's version, the platform's through it
    new = written.name.rsplit("_later", 1)[0]
    assert f"payments: {new}\n" in mesh("current").stdout


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_a_database_that_does_not_exist_is_named_in_one_line(tmp_path, postgres_url,
                                                             command):
    """Not a traceback per restart: the setting, the database (its password
    hidden) and what to do."""
    url = postgres_url.rsplit("/", 1)[0] + "/mesh_test_no_such_database"
    env = dict(os.environ, MESH_DATA_DIR=str(tmp_path), DATABASE_URL_ORDERS=url)
    args = ["migrate", "--only", "orders"] if command == "migrate" else ["serve", "orders"]
    done = subprocess.run([sys.executable, "-m", "mesh.ops.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "DATABASE_URL_ORDERS" in lines[0]
    assert 'database "mesh_test_no_such_database" does not exist' in lines[0]
    assert ":postgres@" not in lines[0] and "***" in lines[0]  # no password
