"""Retention on SQLite and the real PostgreSQL: old rows go, young and unsent ones stay."""
import datetime as dt
import uuid

import eventlet
import pytest
from nameko.containers import ServiceContainer
from sqlalchemy import func, insert, select, text

from mesh.data.db import make_engine, utcnow
from mesh.data.retention import PLATFORM_RULES, Expiring, Pruner, prune
from mesh.data.tables import inbox, outbox, rpc_requests
from mesh.core.services import import_service
from mesh.testing import load_test_config, wait_until
from services.orders import domain
from services.orders.models import Order

DAY = dt.timedelta(days=1)
RULES = (*PLATFORM_RULES, domain.IDEMPOTENCY_KEYS)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request, migrated_session, tmp_path):
    """The orders database (it has every platform table and a rule of its own),
    migrated, on each backend; yields `(engine, config)`."""
    overrides = {}
    if request.param == "postgresql":
        overrides["DATABASE_URL_ORDERS"] = request.getfixturevalue(
            "postgres_databases")("retention")
    session = migrated_session("orders", **overrides)
    config = {**load_test_config(request.config.getoption("--mesh-config"),
                                 MESH_DATA_DIR=tmp_path / "data"), **overrides}
    yield session.get_bind(), config


def add_outbox(conn, occurred, published):
    conn.execute(insert(outbox).values(
        event_id=str(uuid.uuid4()), type="order_created", version=1, occurred_at=occurred,
        data="{}", published_at=published))


def add_order(conn, updated, key):
    return conn.execute(insert(Order.__table__).values(
        user_id=1, status="confirmed", total_cents=100, card_token=None,
        stock_state="reserved", payment_state="captured", idempotency_key=key,
        request_hash="h" * 64, created_at=updated, updated_at=updated)
        .returning(Order.__table__.c.id)).scalar_one()


def fill(engine, now, old=3, young=2, orders=True):
    """`old` rows of every kind past their retention (defaults: an outbox row a
    day, the rest a week) and `young` ones within it, plus old unsent events;
    `orders` with Idempotency-Keys too, in the orders database."""
    ancient, recent = now - 30 * DAY, now - dt.timedelta(minutes=5)
    with engine.begin() as conn:
        for when, count in ((ancient, old), (recent, young)):
            for _ in range(count):
                add_outbox(conn, when, published=when)
                conn.execute(insert(inbox).values(handler="orders.on_x",
                                                  event_id=str(uuid.uuid4()),
                                                  processed_at=when))
                conn.execute(insert(rpc_requests).values(key=uuid.uuid4().hex,
                                                         applied_at=when))
                if orders:
                    add_order(conn, when, key=f"key-{uuid.uuid4().hex}")
        for _ in range(2):  # the broker was away for a month: never published
            add_outbox(conn, ancient, published=None)


def counts(engine, orders=True):
    with engine.connect() as conn:
        found = {
            "published": conn.scalar(select(func.count()).select_from(outbox)
                                     .where(outbox.c.published_at.is_not(None))),
            "unsent": conn.scalar(select(func.count()).select_from(outbox)
                                  .where(outbox.c.published_at.is_(None))),
            "inbox": conn.scalar(select(func.count()).select_from(inbox)),
            "rpc_requests": conn.scalar(select(func.count()).select_from(rpc_requests)),
        }
        if orders:
            found["keys"] = conn.scalar(
                select(func.count()).select_from(Order.__table__)
                .where(Order.__table__.c.idempotency_key.is_not(None)))
            found["orders"] = conn.scalar(select(func.count()).select_from(Order.__table__))
    return found


def test_old_rows_go_young_and_unsent_ones_stay(database):
    engine, config = database
    now = utcnow()
    fill(engine, now, old=5, young=2)
    with engine.connect() as conn:
        kept_at = conn.execute(select(Order.__table__.c.updated_at)
                               .order_by(Order.__table__.c.id)).scalars().all()
    # batches of 2: five old rows take three, and each is its own transaction
    pruned = prune(engine, RULES, config, "test prune", now=now, size=2)
    assert pruned == {"outbox": 5, "inbox": 5, "rpc_requests": 5, "idempotency_keys": 5}
    assert counts(engine) == {"published": 2, "unsent": 2, "inbox": 2, "rpc_requests": 2,
                              "keys": 2, "orders": 7}
    with engine.connect() as conn:
        forgotten = conn.execute(select(Order.__table__).where(
            Order.__table__.c.idempotency_key.is_(None))).all()
        assert kept_at == conn.execute(select(Order.__table__.c.updated_at)
                                       .order_by(Order.__table__.c.id)).scalars().all()
    assert {row.request_hash for row in forgotten} == {None}
    # a second round finds nothing left to do
    assert set(prune(engine, RULES, config, "test prune", now=now).values()) == {0}


def test_each_age_is_its_setting(database):
    engine, config = database
    now = utcnow()
    fill(engine, now, old=0, young=0)
    with engine.begin() as conn:
        two_days = now - 2 * DAY
        add_outbox(conn, two_days, published=two_days)
        conn.execute(insert(inbox).values(handler="h", event_id="e", processed_at=two_days))
        conn.execute(insert(rpc_requests).values(key="k", applied_at=two_days))
        add_order(conn, two_days, key="two-days")
    # two days: past the outbox's and the keys' day, within a week's inbox and requests
    assert prune(engine, RULES, config, "test prune", now=now) == {
        "outbox": 1, "inbox": 0, "rpc_requests": 0, "idempotency_keys": 1}
    shorter = {**config, "INBOX_RETENTION_SECONDS": 86400,
               "REQUEST_KEY_RETENTION_SECONDS": 86400}
    assert prune(engine, RULES, shorter, "test prune", now=now) == {
        "outbox": 0, "inbox": 1, "rpc_requests": 1, "idempotency_keys": 0}
    assert counts(engine)["unsent"] == 2


def test_two_pruners_at_once_prune_everything_once(database):
    engine, config = database
    now = utcnow()
    fill(engine, now, old=40, young=3)
    other = make_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        first = eventlet.spawn(prune, engine, RULES, config, "test prune", now, 4)
        second = eventlet.spawn(prune, other, RULES, config, "test prune", now, 4)
        results = [first.wait(), second.wait()]  # neither raises (no deadlock)
    finally:
        other.dispose()
    # whoever found the lock held left the rest to the other; nothing is done twice
    for name in ("outbox", "inbox", "rpc_requests", "idempotency_keys"):
        assert sum(result.get(name, 0) for result in results) == 40
    assert counts(engine) == {"published": 3, "unsent": 2, "inbox": 3, "rpc_requests": 3,
                              "keys": 3, "orders": 43}


def test_every_service_of_the_mesh_has_a_pruner_and_orders_adds_its_keys(mesh_config):
    for name, path in mesh_config["SERVICES"].items():
        if name == "gateway":
            continue  # no database
        container = ServiceContainer(import_service(path), mesh_config)
        pruners = [e for e in container.subextensions if isinstance(e, Pruner)]
        assert len(pruners) == 1, name
        container.kill()
    orders = ServiceContainer(import_service(mesh_config["SERVICES"]["orders"]), mesh_config)
    (pruner,) = [e for e in orders.subextensions if isinstance(e, Pruner)]
    (keys,) = [d for d in orders.dependencies if isinstance(d, Expiring)]
    keys.setup()  # what the container's setup does: the rule joins the shared pruner's
    assert keys.pruner is pruner and domain.IDEMPOTENCY_KEYS in pruner.rules
    orders.kill()


def test_a_running_service_prunes_by_itself_and_counts_it(start_service, mesh_config):
    from services.inventory.service import InventoryService

    container = start_service(InventoryService, PRUNE_INTERVAL_SECONDS=1)
    (pruner,) = [e for e in container.subextensions if isinstance(e, Pruner)]
    fill(pruner.engine, utcnow(), old=3, young=1, orders=False)
    registry = pruner.metrics.registry

    def pruned(table):
        return registry.get_sample_value("mesh_pruned_rows_total",
                                         {"service": "inventory", "table": table})
    wait_until(lambda: pruned("inbox") == 3 and pruned("outbox") == 3
               and pruned("rpc_requests") == 3, timeout=10, what="a pruning round")
    assert counts(pruner.engine, orders=False) == {
        "published": 1, "unsent": 2, "inbox": 1, "rpc_requests": 1}


@pytest.mark.postgres
def test_an_order_that_moves_while_its_key_is_being_forgotten_keeps_it(
        migrated_session, postgres_databases, tmp_path):
    url = postgres_databases("retention_move")
    engine = migrated_session("orders", DATABASE_URL_ORDERS=url).get_bind()
    config = load_test_config("config.yaml", MESH_DATA_DIR=tmp_path / "data",
                              DATABASE_URL_ORDERS=url)
    orders = Order.__table__
    with engine.begin() as conn:
        order_id = add_order(conn, utcnow() - 2 * DAY, key="moving")

    def waiting():
        with engine.connect() as conn:
            return conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"))
    with engine.begin() as mover:  # the saga moves it; the pruner chose it meanwhile
        mover.execute(orders.update().where(orders.c.id == order_id)
                      .values(status="cancelling", updated_at=utcnow()))
        pruning = eventlet.spawn(prune, engine, [domain.IDEMPOTENCY_KEYS], config,
                                 "test prune")
        wait_until(lambda: pruning.dead or waiting(), what="the pruner to wait for it")
    assert pruning.wait() == {"idempotency_keys": 0}
    with engine.connect() as conn:
        assert conn.scalar(select(orders.c.idempotency_key)
                           .where(orders.c.id == order_id)) == "moving"
