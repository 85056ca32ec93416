"""The mesh on a three-node RabbitMQ cluster with quorum queues: the node leading
the orders queues goes down mid-load and comes back, and nothing is lost or
done twice."""
import json
import os
import sqlite3
import threading
import time
import uuid

import eventlet
import pytest
import requests

from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, RunningMesh, token
from tests.cluster.rabbit_cluster import RabbitCluster

ORDERS, CLIENTS, QUANTITY = 300, 4, 1
PACE = 0.2  # seconds each client waits between orders: ~20 orders/s
RETRYABLE = {502, 503, 504}


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:  # its nodes run as the rabbitmq user, as the system's does
        pytest.skip("the cluster test starts RabbitMQ nodes as the rabbitmq user: "
                    "run it as root (CI does)")
    cluster = RabbitCluster().start()
    yield cluster
    cluster.close()


def place(mesh, customer, product_id, stats):
    """POST one order until it is answered for good, with one Idempotency-Key:
    what the README tells a client to do after a 503 or a 504."""
    key = f"cluster-{uuid.uuid4().hex}"
    body = {"items": [{"product_id": product_id, "quantity": QUANTITY}],
            "payment": {"card_token": "tok_visa"}}
    deadline = min(time.monotonic() + 90, stats["deadline"])
    while time.monotonic() < deadline:
        try:
            response = mesh.http("POST", "/api/v1/orders", customer, json=body,
                                 headers={"Idempotency-Key": key})
        except requests.RequestException:
            response = None
        if response is not None and response.status_code not in RETRYABLE:
            assert response.ok, response.text
            with stats["lock"]:
                stats["answered"].append(time.monotonic())
            eventlet.sleep(PACE)  # a steady load, so that it spans the failure
            return response.json()["id"]
        with stats["lock"]:
            stats["retries"] += 1
        eventlet.sleep(0.2)
    raise AssertionError(f"order {key} never answered")


def rows(path, query):
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


def test_a_node_leading_the_orders_queues_fails_and_returns_under_load(
        cluster, mesh_env):
    # its nodes run no management API, which `mesh broker setup` needs: one user for all
    env = mesh_env(AMQP_URI=cluster.uri, QUEUE_TYPE="quorum", API_RATE_LIMIT="100000/60",
                   RPC_TIMEOUT="5", BROKER_IDENTITIES="false")
    mesh = RunningMesh(env)
    try:
        mesh.wait_for("ready: the gateway is serving on", timeout=90)
        admin = token(mesh, ADMIN_EMAIL, ADMIN_PASSWORD)
        created = mesh.http("POST", "/api/v1/products", admin, json={
            "sku": "CLUSTER-1", "name": "Cluster mug", "price_cents": 500,
            "stock": ORDERS * QUANTITY})
        assert created.status_code == 201, created.text
        product_id = created.json()["id"]
        mesh.http("POST", "/api/v1/auth/register", json={
            "email": "load@example.com", "password": "correct horse", "name": "Load"})
        customer = token(mesh, "load@example.com", "correct horse")

        leader = cluster.leader("rpc-orders", cluster.nodes[-1])
        # the whole load ends by then, answered or not: a failure, never a hang
        stats = {"lock": threading.Lock(), "answered": [], "retries": 0,
                 "deadline": time.monotonic() + 180}
        started = time.monotonic()
        # green threads: the tests run monkey-patched, where a real thread pool's
        # queue would block every other green thread
        pool = eventlet.GreenPool(CLIENTS)
        placed = [pool.spawn(place, mesh, customer, product_id, stats)
                  for _ in range(ORDERS)]
        while len(stats["answered"]) < ORDERS // 3:
            assert time.monotonic() < stats["deadline"], "the load never got going"
            eventlet.sleep(0.05)
        stopped_at = time.monotonic()
        cluster.stop_node(leader)
        eventlet.sleep(5)
        cluster.start_node(leader)
        returned_at = time.monotonic()
        order_ids = [thread.wait() for thread in placed]
        took = time.monotonic() - started

        orders_db = f"{env['MESH_DATA_DIR']}/orders.sqlite"

        def unsettled():
            return rows(orders_db, "SELECT count(*) FROM orders WHERE status NOT IN "
                                   "('confirmed', 'rejected')")[0][0]
        deadline = time.monotonic() + 60
        while unsettled() and time.monotonic() < deadline:
            eventlet.sleep(0.5)

        statuses = dict(rows(orders_db, "SELECT status, count(*) FROM orders GROUP BY status"))
        answered = sorted(stats["answered"])
        stall = max((b - a for a, b in zip(answered, answered[1:]) if b > stopped_at),
                    default=0.0)
        settle = rows(orders_db, "SELECT max((julianday(updated_at) - julianday(created_at))"
                                 " * 86400) FROM orders")[0][0]
        print(f"\ncluster: {ORDERS} orders in {took:.1f} s; node {leader} (leading "
              f"rpc-orders) down for {returned_at - stopped_at:.1f} s; {statuses}; "
              f"{stats['retries']} client retries; longest wait between answers after "
              f"the node went {stall:.2f} s; slowest order settled in {settle:.2f} s")

        assert len(set(order_ids)) == ORDERS  # one order per key, none twice
        assert sum(statuses.values()) == ORDERS
        assert set(statuses) <= {"confirmed", "rejected"}, statuses
        payments = f"{env['MESH_DATA_DIR']}/payments.sqlite"
        captured = rows(payments, "SELECT order_id, count(*) FROM payments "
                                  "WHERE status = 'captured' GROUP BY order_id")
        assert all(count == 1 for _, count in captured)
        assert len(captured) == statuses.get("confirmed", 0)
        notices = rows(f"{env['MESH_DATA_DIR']}/notifications.sqlite",
                       "SELECT order_id, kind, count(*) FROM notifications "
                       "GROUP BY order_id, kind HAVING count(*) > 1")
        assert notices == []  # each event handled once
        inventory = f"{env['MESH_DATA_DIR']}/inventory.sqlite"
        (stock,), = rows(inventory, f"SELECT stock FROM products WHERE id = {product_id}")
        assert stock == ORDERS * QUANTITY - statuses.get("confirmed", 0) * QUANTITY
        report = json.loads(mesh.mesh("status", "--json").stdout)
        parked = {queue: count for service in report["services"].values()
                  for queue, count in service["dead_letters"].items() if count}
        assert parked == {}
    except AssertionError:
        print(mesh.story())
        raise
    finally:
        if mesh.process.poll() is None:
            mesh.stop()
