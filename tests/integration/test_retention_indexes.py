"""Pruning stays cheap as tables grow: every query the pruner runs, in every
service, finds its rows through an index, on SQLite and on the real PostgreSQL.

Each service's database is migrated by its own history and filled as a pruner
leaves it in steady state: a retention period's worth of young rows, the few
that aged past it since the last round, and (orders) every older order whose
key is already forgotten. One real pruning round runs; each statement it sent
is then asked for its plan, with the very parameters it ran with. PostgreSQL
plans from statistics, so its tables are analysed first, as autovacuum would
have done by then; SQLite is left as the mesh leaves it (no statistics).
"""
import datetime as dt
import re
import uuid

import pytest
from nameko.containers import ServiceContainer
from sqlalchemy import event, insert, text

from mesh.data import migrations
from mesh.data.db import make_engine, utcnow
from mesh.data.retention import Expiring, Pruner, prune
from mesh.data.tables import inbox, outbox, rpc_requests
from mesh.core.services import import_service
from mesh.testing import load_test_config
from services.orders.models import Order

SERVICES = ["accounts", "inventory", "orders", "payments", "notifications"]
# the index each rule's query must find its rows by: its age column first, and
# for a rule that keeps some old rows (orders' forgotten keys) only the others
INDEXES = {"outbox": "ix_outbox_unpublished", "inbox": "ix_inbox_processed_at",
           "rpc_requests": "ix_rpc_requests_applied_at",
           "idempotency_keys": "ix_orders_updated_at_keyed"}
YOUNG, FORGOTTEN, OLD = 3000, 3000, 5


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request):
    return request.param


def the_pruners_rules(service_cls, config):
    """The rules the service's Pruner applies: the platform's and each of the
    service's own `Expiring` ones, joined as the container's setup joins them."""
    container = ServiceContainer(service_cls, config)
    try:
        (pruner,) = [e for e in container.subextensions if isinstance(e, Pruner)]
        for dependency in container.dependencies:
            if isinstance(dependency, Expiring):
                dependency.setup()
        return list(pruner.rules)
    finally:
        container.kill()


def fill_outbox(conn, young, old):
    rows = [(young, YOUNG), (old, OLD), (None, YOUNG // 10)]  # and some not yet sent
    conn.execute(insert(outbox), [
        {"event_id": str(uuid.uuid4()), "type": "x_happened", "version": 1,
         "occurred_at": young, "data": "{}", "published_at": when}
        for when, count in rows for _ in range(count)])


def fill_inbox(conn, young, old):
    conn.execute(insert(inbox), [
        {"handler": f"service.on_{n % 7}", "event_id": str(uuid.uuid4()),
         "processed_at": when}
        for when, count in ((young, YOUNG), (old, OLD)) for n in range(count)])


def fill_rpc_requests(conn, young, old):
    conn.execute(insert(rpc_requests), [
        {"key": uuid.uuid4().hex, "applied_at": when}
        for when, count in ((young, YOUNG), (old, OLD)) for _ in range(count)])


def fill_orders(conn, young, old):
    # orders older than the keys' day whose keys were forgotten in earlier rounds
    forgotten = [(old - dt.timedelta(days=1), None)] * FORGOTTEN
    keyed = [(young, "key")] * YOUNG + [(old, "key")] * OLD
    conn.execute(insert(Order.__table__), [
        {"user_id": n % 100, "status": "confirmed", "total_cents": 100,
         "card_token": None, "stock_state": "reserved", "payment_state": "captured",
         "idempotency_key": key and f"{key}-{n}", "request_hash": key and "h" * 64,
         "created_at": when, "updated_at": when}
        for n, (when, key) in enumerate(forgotten + keyed)])


FILL = {"outbox": fill_outbox, "inbox": fill_inbox, "rpc_requests": fill_rpc_requests,
        "orders": fill_orders}


def steady_state(engine, rules, config, now):
    """Each rule's table as the pruner leaves it running every minute."""
    with engine.begin() as conn:
        for rule in rules:
            kept = dt.timedelta(seconds=config[rule.setting])
            FILL[rule.table.name](conn, now - kept / 2, now - kept - dt.timedelta(minutes=1))
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))


def pruning_statements(engine, rules, config, now):
    """`(statement, parameters)` of the DELETE or UPDATE one pruning round sent
    for each rule (one batch each: fewer rows aged than a batch takes)."""
    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("DELETE", "UPDATE")):
            sent.append((statement, parameters))
    event.listen(engine, "before_cursor_execute", record)
    try:
        pruned = prune(engine, rules, config, "test prune", now=now)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert pruned == {rule.name: OLD for rule in rules}, "the round pruned what aged"
    assert len(sent) == len(rules)
    return sent


def plan(engine, statement, parameters):
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + statement, parameters).all()
    return [row[-1] for row in rows]


def walks(engine, table, lines):
    """The plan's steps that read every row of `table` (or all of an index)."""
    if engine.dialect.name == "sqlite":
        return [line for line in lines if re.match(rf"\s*SCAN {table}\b", line)]
    return [line for line in lines if re.search(rf"Seq Scan on {table}\b", line)]


@pytest.mark.parametrize("service", SERVICES)
def test_every_pruning_query_uses_an_index(request, tmp_path, backend, service):
    overrides = {}
    if backend == "postgresql":
        overrides[f"DATABASE_URL_{service.upper()}"] = request.getfixturevalue(
            "postgres_databases")(f"prune_{service}")
    config = load_test_config(request.config.getoption("--mesh-config"),
                              MESH_DATA_DIR=tmp_path / "data", **overrides)
    rules = the_pruners_rules(import_service(config["SERVICES"][service]), config)
    assert set(INDEXES) >= {rule.name for rule in rules}, \
        "a new pruning rule: give its query an index, and name it in INDEXES"
    migrations.upgrade(config, service)
    engine = make_engine(migrations.alembic_config(config, service).attributes["url"])
    try:
        now = utcnow()
        steady_state(engine, rules, config, now)
        sent = pruning_statements(engine, rules, config, now)
        faults = []
        for rule, (statement, parameters) in zip(rules, sent):
            lines = plan(engine, statement, parameters)
            if not any(INDEXES[rule.name] in line for line in lines) \
                    or walks(engine, rule.table.name, lines):
                faults.append(f"{rule.name}, not by {INDEXES[rule.name]}:\n"
                              + "\n".join(lines))
    finally:
        engine.dispose()
    assert not faults, "pruning without its index:\n" + "\n".join(faults)
