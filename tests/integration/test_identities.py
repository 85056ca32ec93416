"""Broker identities against the real RabbitMQ: `mesh broker setup` makes each
service's user from the contracts, and the broker refuses whatever a service's
contract does not allow it (a vhost and users of the test's own)."""
from urllib.parse import quote

import amqp
import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection, Exchange, Queue

from mesh.messaging.identities import identity_uri
from mesh.ops import dlq
from mesh.ops.broker_setup import management_api, setup, vhost_of
from mesh.testing import load_test_config, temporary_identities, wait_until


@pytest.fixture
def config(mesh_config, mesh_config_path, tmp_path):
    with temporary_identities(mesh_config["AMQP_URI"]) as identities:
        yield load_test_config(mesh_config_path, AMQP_URI=mesh_config["AMQP_URI"],
                               MESH_DATA_DIR=tmp_path / "data", **identities)


@pytest.fixture
def as_orders(config):
    """A publisher and consumer connected as the orders service."""
    setup(config)
    with Connection(identity_uri(config, "orders")) as connection:
        connection.connect()
        yield connection


def broker_state(config):
    """Everything `setup` decides, as the broker reports it."""
    api, vhost = management_api(config), quote(vhost_of(config["AMQP_URI"]), safe="")
    prefix = config["BROKER_USER_PREFIX"]
    users = sorted((u["name"], u["tags"]) for u in api.call("GET", "users")
                   if u["name"].startswith(prefix))
    return {"users": users,
            "permissions": sorted(
                (p["user"], p["configure"], p["write"], p["read"])
                for p in api.call("GET", f"vhosts/{vhost}/permissions")),
            "topics": sorted((p["user"], p["exchange"], p["write"], p["read"])
                             for p in api.call("GET", f"vhosts/{vhost}/topic-permissions")),
            "exchanges": sorted((e["name"], e["type"], e["durable"])
                                for e in api.call("GET", f"exchanges/{vhost}"))}


def publish(connection, exchange, routing_key):
    """Publish one confirmed message; the broker's refusal raises."""
    channel = connection.channel()
    try:
        channel.basic_publish_confirm(amqp.Message(b"{}"), exchange=exchange,
                                      routing_key=routing_key)
    finally:
        if channel.is_open:
            channel.close()


def test_setup_twice_leaves_the_same_state_and_each_identity_can_log_in(config):
    made = setup(config)
    first = broker_state(config)
    assert setup(config) == made
    assert broker_state(config) == first
    prefix = config["BROKER_USER_PREFIX"]
    assert made == {name: prefix + name for name in [*config["SERVICES"], "operator"]}
    assert {"nameko-rpc", "orders.events", "orders.queues"} <= {e[0] for e in first["exchanges"]}
    for identity in made:
        with Connection(identity_uri(config, identity)) as connection:
            connection.connect()


def test_setup_takes_away_a_topic_permission_no_longer_granted(config):
    setup(config)
    api, vhost = management_api(config), quote(vhost_of(config["AMQP_URI"]), safe="")
    user = quote(config["BROKER_USER_PREFIX"] + "orders", safe="")
    api.call("PUT", f"topic-permissions/{vhost}/{user}",
             {"exchange": "accounts.events", "write": ".*", "read": ".*"})
    setup(config)
    topics = {p["exchange"] for p in api.call("GET", f"users/{user}/topic-permissions")}
    assert "accounts.events" not in topics and "nameko-rpc" in topics


@pytest.mark.parametrize("exchange, routing_key", [
    ("nameko-rpc", "accounts.get_user"),         # an RPC orders does not call
    ("nameko-rpc", "inventory.get_prices.x"),    # a key its contract does not name
    ("inventory.events", "stock_reserved"),      # another service's events
    ("orders.events", "stock_reserved"),         # an event its contract does not declare
    ("", "rpc-accounts"),                        # any queue by name
    ("inventory.queues", "evt-orders-order_created--inventory.on_order_created"),
])
def test_orders_may_not_publish_what_its_contract_does_not_say(as_orders, exchange,
                                                               routing_key):
    with pytest.raises(AccessRefused):
        publish(as_orders, exchange, routing_key)


@pytest.mark.parametrize("exchange, routing_key", [
    ("nameko-rpc", "inventory.get_prices"),      # an RPC it calls
    ("nameko-rpc", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"),  # a reply
    ("orders.events", "order_created"),          # its own event
    ("orders.queues", "anything"),               # its retries and dead letters
])
def test_orders_may_publish_what_its_contract_says(as_orders, exchange, routing_key):
    publish(as_orders, exchange, routing_key)


def test_orders_may_not_consume_bind_or_declare_what_is_not_its_own(config, as_orders):
    with Connection(config["AMQP_URI"]) as admin:  # the queues as their services make them
        Queue("rpc-inventory", durable=True)(admin.channel()).declare()
    with pytest.raises(AccessRefused):  # another service's queue
        as_orders.channel().basic_consume("rpc-inventory", callback=lambda m: None)
    with pytest.raises(AccessRefused):  # an exchange, even one that exists
        Exchange("nameko-rpc", type="topic", durable=True)(as_orders.channel()).declare()
    with pytest.raises(AccessRefused):  # another service's queue
        as_orders.channel().queue_declare("rpc-inventory", durable=True)
    own = as_orders.channel()
    own.queue_declare("rpc-orders", durable=True)
    own.queue_bind("rpc-orders", "nameko-rpc", "orders.*")
    with pytest.raises(AccessRefused):  # another service's requests into its own queue
        as_orders.channel().queue_bind("rpc-orders", "nameko-rpc", "accounts.*")
    with pytest.raises(AccessRefused):  # events of a service it hears nothing from
        as_orders.channel().queue_bind("rpc-orders", "accounts.events", "user_registered")
    with pytest.raises(AccessRefused):  # events it does not handle
        as_orders.channel().queue_bind("rpc-orders", "payments.events", "#")


def test_a_service_running_as_its_identity_answers_and_parks_through_its_own_exchange(
        config, start_service, rpc_client):
    from services.inventory.service import InventoryService

    setup(config)
    container = start_service(InventoryService, **{k: config[k] for k in (
        "BROKER_IDENTITIES", "BROKER_USER_PREFIX", "MESH_DATA_DIR")})
    assert container.config["AMQP_URI"] == identity_uri(config, "inventory")
    assert rpc_client.inventory.list_products()["items"] == []
    queue = "evt-orders-order_created--inventory.on_order_created"
    with Connection(config["AMQP_URI"]) as admin:  # a malformed event goes to the DLQ
        publish(admin, "orders.events", "order_created")
    assert wait_until(lambda: dlq.messages(config["AMQP_URI"], queue))[0]["error"] \
        .startswith("malformed")


def test_a_delay_queue_made_before_the_services_own_exchange_still_delivers(
        mesh_config, start_service):
    """An upgrade: the old `.retry.` queues, dead-lettering through the default
    exchange, are left as they are, and what they hold reaches the handler."""
    from services.inventory.service import InventoryService

    handler = "evt-orders-order_created--inventory.on_order_created"
    old = f"{handler}.retry.1000"
    with Connection(mesh_config["AMQP_URI"]) as admin:
        admin.channel().queue_declare(handler, durable=True, auto_delete=False)  # as left
        admin.channel().queue_declare(old, durable=True, auto_delete=False, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": handler,
            "x-message-ttl": 1000})
        publish(admin, "", old)  # a retry in flight across the upgrade
    start_service(InventoryService)
    parked = wait_until(lambda: dlq.messages(mesh_config["AMQP_URI"], handler))
    assert parked[0]["error"].startswith("malformed")  # it reached the handler


def mesh_broker_setup(config, **env):
    import os
    import subprocess
    import sys

    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL_")}
    environment.update({"AMQP_URI": config["AMQP_URI"], "BROKER_IDENTITIES": "true",
                        "MESH_DATA_DIR": config["MESH_DATA_DIR"],
                        "BROKER_USER_PREFIX": config["BROKER_USER_PREFIX"], **env})
    return subprocess.run([sys.executable, "-m", "mesh.ops.cli", "broker", "setup"],
                          env=environment, capture_output=True, text=True, timeout=120)


def test_mesh_broker_setup_names_each_user_or_says_what_is_wrong(config):
    done = mesh_broker_setup(config)
    assert done.returncode == 0, done.stderr
    assert f"orders: broker user {config['BROKER_USER_PREFIX']}orders" in done.stdout
    with Connection(identity_uri(config, "operator")) as operator:  # same passwords
        operator.connect()
    away = mesh_broker_setup(config, BROKER_MANAGEMENT_URL="http://127.0.0.1:1")
    assert away.returncode == 1
    assert "management API at http://127.0.0.1:1 does not answer" in away.stderr
    assert "BROKER_IDENTITIES=false" in away.stderr
    off = mesh_broker_setup(config, BROKER_IDENTITIES="false")
    assert off.returncode == 1 and "BROKER_IDENTITIES is off" in off.stderr


def test_setup_makes_every_handlers_queue_so_an_event_waits_for_its_subscriber(config):
    setup(config)
    # no service has started: an order_rejected published now must still reach
    # each of its three subscribers, payments' refund included
    with Connection(config["AMQP_URI"]) as admin:
        publish(admin, "orders.events", "order_rejected")
        for service in ("inventory", "payments", "notifications"):
            name = f"evt-orders-order_rejected--{service}.on_order_rejected"
            assert admin.default_channel.queue_declare(name, passive=True).message_count == 1


def test_under_identities_an_event_waits_while_a_subscribers_queue_is_missing(
        config, mesh_containers, tmp_path):
    """Hole 1 where production runs: the relay may only look its subscribers'
    queues up. With payments' queue lost, order_rejected stays unsent while
    order_created (whose one queue is there) goes; once the queue is back, so is
    the event."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from mesh.data.tables import outbox
    from mesh.messaging.outbox import OutboxWriter
    from mesh.runtime.serve import container_config
    from mesh.testing import create_tables
    from tests.integration.test_exactly_once import ORDERS, OrdersOutbox, ToyBase

    setup(config)
    lost = "evt-orders-order_rejected--payments.on_order_rejected"
    with Connection(config["AMQP_URI"]) as admin:
        admin.default_channel.queue_delete(lost)
    url = f"sqlite:///{tmp_path}/orders.sqlite"
    engine = create_engine(url)
    create_tables(engine, ToyBase)
    container = mesh_containers(OrdersOutbox, container_config(
        {**config, "DATABASE_URL_ORDERS": url}, "orders"))
    container.start()
    writer = OutboxWriter(ORDERS, {"request_id": "hole-1"}, lambda: None)
    outcome = {"order_id": 7, "user_id": 1, "total_cents": 1000, "reason": "timeout"}
    with Session(engine) as session:
        rejected = writer.add(session, "order_rejected", outcome)["event_id"]
        created = writer.add(session, "order_created", {
            "order_id": 7, "user_id": 1, "total_cents": 1000,
            "lines": [{"product_id": 1, "quantity": 1}]})["event_id"]
        session.commit()

    def sent(event_id):
        with engine.connect() as connection:
            return connection.scalar(select(outbox.c.published_at)
                                     .where(outbox.c.event_id == event_id))
    wait_until(lambda: sent(created), 10, "order_created to be sent")
    assert sent(rejected) is None
    setup(config)  # what an operator does: the queue is made again, bound
    wait_until(lambda: sent(rejected), 15, "order_rejected to be sent once it can arrive")
    with Connection(config["AMQP_URI"]) as admin:
        assert admin.default_channel.queue_declare(lost, passive=True).message_count == 1
    engine.dispose()
