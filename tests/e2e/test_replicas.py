"""`mesh up --scale`: replicas of a service share its work on PostgreSQL, and one
killed with SIGKILL under load loses nothing."""
import json
import os
import signal
import time
import uuid

import eventlet
import psycopg2
import pytest

from mesh.runtime.replicas import OPS_PORT_STRIDE
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, OPS_SERVICES
from tests.e2e.test_operations import samples, value

pytestmark = pytest.mark.postgres
ORDERS = 150
KILL_AFTER = 30


def served(mesh, port):
    """Worker calls a process has counted, by its ops port's /metrics."""
    import requests

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return value(samples(text), "mesh_worker_calls_total")


def place(mesh, customer, product_id, answered):
    """One order, retried with its Idempotency-Key while the mesh answers 5xx."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + 60
    while True:
        response = mesh.http("POST", "/api/v1/orders", customer, headers={
            "Idempotency-Key": key}, json={
            "items": [{"product_id": product_id, "quantity": 1}],
            "payment": {"card_token": "tok_visa"}})
        if response.status_code == 202 or time.monotonic() > deadline:
            answered.append(response)
            return response
        eventlet.sleep(0.2)


def test_replicas_share_the_work_and_one_killed_loses_nothing(start_mesh, postgres_databases):
    urls = {f"DATABASE_URL_{s.upper()}": postgres_databases(s) for s in OPS_SERVICES}
    mesh = start_mesh("--scale", "orders=2,inventory=2", **urls)
    mesh.wait_for("ready: the gateway is serving on", timeout=60)
    assert sorted(mesh.children().values()) == [
        "accounts", "gateway", "inventory.1", "inventory.2", "notifications",
        "orders.1", "orders.2", "payments"]
    status = json.loads(mesh.mesh("status", "--json").stdout)
    instances = {name: s["instances"] for name, s in status["services"].items()}
    assert instances["orders"] == 2 and instances["inventory"] == 2, status

    admin = mesh.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    product = mesh.http("POST", "/api/v1/products", admin, json={
        "sku": f"rep-{uuid.uuid4().hex[:8]}", "name": "Replicated", "price_cents": 300,
        "stock": 1000}).json()
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    mesh.http("POST", "/api/v1/auth/register", json={
        "email": email, "password": "correct horse", "name": "R"})
    customer = mesh.http.token(email, "correct horse")

    pool, answered = eventlet.GreenPool(8), []
    placed = [pool.spawn(place, mesh, customer, product["id"], answered) for _ in range(KILL_AFTER)]
    [p.wait() for p in placed]
    orders_port = int(mesh.env["OPS_PORT_ORDERS"])
    both = (served(mesh, orders_port), served(mesh, orders_port + OPS_PORT_STRIDE))
    assert all(both), f"one orders replica did no work: {both}"
    rest = []
    loader = eventlet.spawn(lambda: rest.extend(
        pool.spawn(place, mesh, customer, product["id"], answered)
        for _ in range(ORDERS - KILL_AFTER)))
    eventlet.sleep(0.5)  # mid-load: requests and saga steps in flight
    victim = next(pid for pid, name in mesh.children().items() if name == "orders.1")
    os.kill(victim, signal.SIGKILL)
    killed_at, unanswered = time.monotonic(), ORDERS - len(answered)
    loader.wait()
    responses = [p.wait() for p in placed + rest]
    assert [r.status_code for r in responses] == [202] * ORDERS, \
        [r.text for r in responses if r.status_code != 202]

    deadline = time.monotonic() + 90
    ids = [r.json()["id"] for r in responses]
    final = {}
    while len(final) < ORDERS:
        assert time.monotonic() < deadline, (len(final), mesh.story())
        for order_id in set(ids) - set(final):
            got = mesh.http("GET", f"/api/v1/orders/{order_id}", customer)
            if got.status_code == 200 and got.json()["status"] in ("confirmed", "rejected"):
                final[order_id] = got.json()["status"]
        time.sleep(0.3)
    print(f"\n{ORDERS} orders; orders.1 killed with {unanswered} unanswered; "
          f"all settled {time.monotonic() - killed_at:.1f} s after the kill")
    assert unanswered, "the kill came after the load"
    assert len(set(ids)) == ORDERS
    assert set(final.values()) == {"confirmed"}
    assert mesh.http("GET", "/api/v1/orders", customer).json()["total"] == ORDERS
    while (stock := mesh.http("GET", f"/api/v1/products/{product['id']}")
           .json()["stock"]) != 1000 - ORDERS:
        assert time.monotonic() < deadline, stock
        time.sleep(0.3)
    with psycopg2.connect(urls["DATABASE_URL_PAYMENTS"]) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM payments GROUP BY status")
        assert dict(cursor.fetchall()) == {"captured": ORDERS}
    with psycopg2.connect(urls["DATABASE_URL_NOTIFICATIONS"]) as conn, \
            conn.cursor() as cursor:
        cursor.execute("SELECT order_id, count(*) FROM notifications "
                       "WHERE kind = 'order_confirmed' GROUP BY order_id")
        counts = dict(cursor.fetchall())
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}
    status = json.loads(mesh.mesh("status", "--json").stdout)
    parked = {name: s["dead_letters"] for name, s in status["services"].items()
              if any(s["dead_letters"].values())}
    assert parked == {}, parked
