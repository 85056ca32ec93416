"""Every message acted on exactly once, whatever stops when: the holes the messaging
core had, each shown on the real broker (the tests are named after the hole)."""
import json
import uuid

import eventlet
import pytest
from kombu import Connection, Exchange, Queue
from nameko.exceptions import RpcTimeout
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Session

from contracts.accounts import CONTRACT as ACCOUNTS
from contracts.inventory import CONTRACT as INVENTORY
from contracts.orders import CONTRACT as ORDERS
from mesh.data.db import Database, database_url
from mesh.data.tables import inbox, outbox
from mesh.messaging import handlers
from mesh.messaging.handlers import ATTEMPT, ERROR, handle_event
from mesh.messaging.outbox import Outbox, OutboxWriter
from mesh.messaging.rpc import ServiceRpc, rpc
from mesh.runtime.serve import container_config
from mesh.testing import BrokerProxy, create_tables, wait_until
from services.payments.service import PaymentsService


class ToyBase(DeclarativeBase):
    pass


def message_count(uri, queue):
    """Messages ready in `queue`, or None when it does not exist."""
    with Connection(uri) as connection:
        try:
            return connection.default_channel.queue_declare(queue, passive=True).message_count
        except Exception:  # NOT_FOUND
            return None


# --- hole 1: an event that reaches only some of its subscribers was marked sent ---

class OrdersOutbox:
    """Only orders' outbox: it publishes what the test writes into it."""

    name = "orders"
    db = Database(ToyBase)
    outbox = Outbox(ORDERS)


def test_hole1_an_event_reaches_every_subscriber_or_stays_unsent(
        mesh_containers, start_service, mesh_config, tmp_path):
    uri = mesh_config["AMQP_URI"]
    url = f"sqlite:///{tmp_path}/orders.sqlite"
    engine = create_engine(url)
    create_tables(engine, ToyBase)
    # inventory has run on this vhost (its order_rejected queue is there); payments
    # never has: a captured payment's refund hangs on this event reaching it
    with Connection(uri) as connection:
        Queue("evt-orders-order_rejected--inventory.on_order_rejected",
              exchange=Exchange("orders.events", type="topic", durable=True),
              routing_key="order_rejected", durable=True)(connection.channel()).declare()
    container = mesh_containers(OrdersOutbox, {**mesh_config, "DATABASE_URL_ORDERS": url})
    container.start()
    writer = OutboxWriter(ORDERS, {"request_id": "hole-1"}, lambda: None)
    with Session(engine) as session:
        event_id = writer.add(session, "order_rejected", {
            "order_id": 7, "user_id": 1, "total_cents": 1000, "reason": "timeout"})["event_id"]
        session.commit()

    def published():
        with engine.connect() as connection:
            return connection.scalar(select(outbox.c.published_at)
                                     .where(outbox.c.event_id == event_id))
    wait_until(published, 10, "the event to be marked sent")
    assert message_count(uri, "evt-orders-order_rejected--inventory.on_order_rejected") == 1
    # marked sent: so payments, started later, must get it and record it handled
    start_service(PaymentsService)
    payments = create_engine(database_url(mesh_config, "payments"))

    def handled_by_payments():
        with payments.connect() as connection:
            return connection.scalar(select(inbox.c.event_id)
                                     .where(inbox.c.event_id == event_id))
    wait_until(handled_by_payments, 10, "payments to handle the order_rejected event")
    engine.dispose()
    payments.dispose()


# --- hole 2: SIGTERM dropped the ack of every message still being worked on ---

class SlowPrices:
    """An inventory whose get_prices takes a while, counting every time it runs."""

    name = "inventory"
    contract = INVENTORY
    runs = []

    @rpc
    def get_prices(self, product_ids):
        SlowPrices.runs.append(product_ids)
        # longer than a stopping consumer takes to cancel and leave (two of its
        # one-second rounds), so nothing but the drain keeps its connection open
        eventlet.sleep(3)
        return {"prices": {str(i): 100 for i in product_ids}}


def test_hole2_a_draining_service_acknowledges_what_it_finishes(mesh_containers,
                                                                 mesh_config):
    SlowPrices.runs = []
    config = container_config(mesh_config, "inventory")
    replicas = [mesh_containers(SlowPrices, config) for _ in range(2)]
    for replica in replicas:
        replica.start()
    with ClusterRpcProxy(mesh_config, timeout=10) as client:
        call = eventlet.spawn(client.inventory.get_prices, product_ids=[1])
        busy = wait_until(lambda: [r for r in replicas if r._worker_threads], 5,
                          "a replica to take the request")[0]
        stopping = eventlet.spawn(busy.stop)  # what SIGTERM does in `mesh serve`
        assert call.wait() == {"prices": {"1": 100}}
        stopping.wait()
        eventlet.sleep(4)  # the other replica would have run it again by now
    assert SlowPrices.runs == [[1]]


# --- hole 3: a failed retry or park left the message unacknowledged for good ---

class Failing:
    """A handler that always fails."""

    name = "failing"
    db = Database(ToyBase)

    @handle_event(ACCOUNTS, "user_registered")
    def on_user_registered(self, event):
        raise RuntimeError("still broken")


QUEUE = "evt-accounts-user_registered--failing.on_user_registered"


def envelope():
    return {"event_id": str(uuid.uuid4()), "type": "user_registered", "version": 1,
            "occurred_at": "2026-12-04T00:00:00Z", "correlation_id": "hole-3",
            "data": {"user_id": 1, "email": "a@example.com", "name": "A"}}


def publish(uri, body, headers=None):
    exchange = Exchange("accounts.events", type="topic", durable=True)
    with Connection(uri) as connection:
        connection.Producer().publish(json.dumps(body), exchange=exchange,
                                      routing_key="user_registered",
                                      content_type="application/json",
                                      content_encoding="utf-8", headers=headers or {},
                                      declare=[exchange])


@pytest.fixture
def toy_database(tmp_path):
    url = f"sqlite:///{tmp_path}/failing.sqlite"
    engine = create_engine(url)
    create_tables(engine, ToyBase)
    yield url, engine
    engine.dispose()


def test_hole3_a_malformed_retry_header_is_parked_not_left_unacknowledged(
        mesh_containers, mesh_config, toy_database):
    url, _ = toy_database
    uri = mesh_config["AMQP_URI"]
    config = {**mesh_config, "DATABASE_URL_FAILING": url, "EVENT_RETRY_DELAYS": [0.1],
              "max_workers": 4}
    container = mesh_containers(Failing, config)
    container.start()
    for _ in range(12):  # three times the handler's prefetch
        publish(uri, envelope(), headers={ATTEMPT: "1.0"})
    wait_until(lambda: message_count(uri, f"{QUEUE}.dlq") == 12, 20,
               "every message parked in the DLQ")
    with Connection(uri) as connection:
        parked = Queue(f"{QUEUE}.dlq", no_declare=True)(connection.channel()).get(no_ack=True)
        assert "x-mesh-attempt" in parked.headers[ERROR]
    assert not container._died.ready()


def test_hole3_a_message_whose_retry_cannot_be_sent_goes_back_to_its_queue(
        mesh_containers, mesh_config, toy_database, monkeypatch):
    url, _ = toy_database
    uri = mesh_config["AMQP_URI"]
    config = {**mesh_config, "DATABASE_URL_FAILING": url, "EVENT_RETRY_DELAYS": [0.1]}
    container = mesh_containers(Failing, config)
    container.start()
    real_publish, refused = handlers.publish_raw, []

    def refuse_once(*args, **kwargs):  # the broker lost for one publish, say
        if not refused:
            refused.append(True)
            raise ConnectionResetError("the broker went away mid-publish")
        return real_publish(*args, **kwargs)
    monkeypatch.setattr(handlers, "publish_raw", refuse_once)
    publish(uri, envelope())
    # back in its queue, it is tried again, retried, then parked: settled while the
    # service lives, not when its channel closes
    wait_until(lambda: message_count(uri, f"{QUEUE}.dlq") == 1, 15,
               "the event retried, then parked")
    assert refused and not container._died.ready()


# --- hole 4: a reply that could not be sent killed the whole service ---

def test_hole4_a_reply_that_cannot_be_sent_leaves_the_service_up(mesh_containers,
                                                                 mesh_config):
    proxy = BrokerProxy()
    vhost = mesh_config["AMQP_URI"].rsplit("/", 1)[1]
    config = container_config({**mesh_config, "AMQP_URI":
                               f"pyamqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"},
                              "inventory")
    container = mesh_containers(SlowPrices, config)
    container.start()
    try:
        with ClusterRpcProxy(mesh_config, timeout=5) as client:  # straight to the broker
            call = eventlet.spawn(client.inventory.get_prices, product_ids=[1])
            wait_until(lambda: container._worker_threads, 5, "the request to be taken")
            proxy.block()  # the service loses the broker before it can reply
            with pytest.raises(RpcTimeout):
                call.wait()
            # the worker has given up on its reply (it tried twice) and ended
            wait_until(lambda: not container._worker_threads, 20, "the worker to end")
            eventlet.sleep(0.5)
            assert not container._being_killed and not container._died.ready()
            proxy.unblock()
            with eventlet.Timeout(30):  # reconnected, it answers again
                while True:
                    try:
                        assert client.inventory.get_prices(product_ids=[2]) == {
                            "prices": {"2": 100}}
                        break
                    except RpcTimeout:
                        pass
        assert not container._being_killed
    finally:
        proxy.unblock()
        container.kill()
        proxy.close()


class Asker:
    """Only a caller of inventory: its reply queue's consumer is all it runs."""

    name = "orders"
    inventory = ServiceRpc(INVENTORY, methods=["get_prices"])


def test_hole2_a_service_cut_off_from_its_broker_still_stops(mesh_containers, mesh_config):
    """Nothing to drain once the connection is gone (the broker took everything
    back): a consumer stops rather than reconnecting for ever under a stop, the
    reply queue's of a caller included."""
    proxy = BrokerProxy()
    vhost = mesh_config["AMQP_URI"].rsplit("/", 1)[1]
    uri = f"pyamqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
    containers = [mesh_containers(cls, container_config({**mesh_config, "AMQP_URI": uri},
                                                        cls.name))
                  for cls in (SlowPrices, Asker)]
    for container in containers:
        container.start()
    try:
        proxy.block()
        eventlet.sleep(1)  # they have noticed, and are reconnecting
        with eventlet.Timeout(10):
            for container in containers:
                container.stop()
    finally:
        proxy.unblock()
        for container in containers:
            container.kill()
        proxy.close()
