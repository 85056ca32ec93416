"""`make bench`: RPC and HTTP throughput, the cost of contract checks as a ratio, and
how long an order's saga takes.

Everything runs in this process on a RabbitMQ vhost and data directory of its
own, so the figures compare like with like on a shared, noisy machine. Read
the ratios more than the absolute numbers.
"""
from mesh.testing import free_port, load_test_config, temporary_vhost  # patches eventlet

import logging.config  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402
import requests  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.rpc import rpc as plain_rpc  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from contracts.inventory import CONTRACT  # noqa: E402
from gateway import GatewayService  # noqa: E402
from mesh import migrations  # noqa: E402
from mesh.db import Database, database_url, make_engine  # noqa: E402
from mesh.outbox import Outbox  # noqa: E402
from mesh.rpc import RequestKey  # noqa: E402
from mesh.telemetry import Telemetry  # noqa: E402
from services.accounts.service import AccountsService  # noqa: E402
from services.inventory import domain  # noqa: E402
from services.inventory.models import Base  # noqa: E402
from services.inventory.service import InventoryService  # noqa: E402
from services.notifications.service import NotificationsService  # noqa: E402
from services.orders.service import OrdersService  # noqa: E402
from services.payments.service import PaymentsService  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
CALLS = 400
CONCURRENCY = 10
SAGAS = 30


class PlainInventory:
    """inventory.get_product with the same dependencies, without contract checks."""

    name = "plain_inventory"
    db = Database(Base)
    outbox = Outbox(Base, CONTRACT)
    request_key = RequestKey()

    @plain_rpc
    def get_product(self, product_id):
        product = domain.get_product(self.db.session, product_id).to_dict()
        product["created_at"] = product["created_at"].isoformat()
        return product


class ObservedInventory(PlainInventory):
    """The same plain service with the per-worker log line, metrics (and no tracing)."""

    name = "observed_inventory"
    telemetry = Telemetry()


def rate(clients, call, calls=CALLS):
    """Calls per second of `call(client)`, each client in a green thread of its own.

    Clients are not shared: nameko's standalone proxy reads its reply queue in
    the calling thread, so one proxy serves one caller at a time.
    """
    latencies = []

    def worker(client, n):
        for _ in range(n):
            started = time.perf_counter()
            call(client)
            latencies.append(time.perf_counter() - started)

    pool = eventlet.GreenPool(len(clients))
    started = time.perf_counter()
    for client in clients:
        pool.spawn(worker, client, calls // len(clients))
    pool.waitall()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return len(latencies) / elapsed, latencies[len(latencies) // 2], \
        latencies[int(len(latencies) * 0.99)]


def main():
    with temporary_vhost("mesh-bench") as uri, tempfile.TemporaryDirectory() as data:
        port = free_port()
        # a benchmark floods on purpose: the rate limits are not what it measures
        config = load_test_config("config.yaml", AMQP_URI=uri, MESH_DATA_DIR=data,
                                  GATEWAY_PORT=port, API_RATE_LIMIT="1000000/60",
                                  AUTH_RATE_LIMIT="1000000/60")
        for name in ("plain_inventory", "observed_inventory"):
            config["SERVICES"][name] = config["SERVICES"]["inventory"]
        config["OPS_PORTS"] = {}  # a running mesh may hold them
        # log as the services do (JSON lines), into /dev/null: formatting is part of the cost
        logging.config.dictConfig(config["LOGGING"])
        for handler in logging.getLogger().handlers:
            handler.setStream(open(os.devnull, "w"))
        containers = []
        for cls in (InventoryService, PlainInventory, ObservedInventory, AccountsService,
                    OrdersService, PaymentsService, NotificationsService, GatewayService):
            migrations.upgrade(config, cls.name)
            container = ServiceContainer(cls, config)
            container.start()
            containers.append(container)
        proxies = [ClusterRpcProxy(config, timeout=30) for _ in range(CONCURRENCY)]
        rpcs = [proxy.start() for proxy in proxies]
        sessions = [requests.Session() for _ in range(CONCURRENCY)]
        try:
            product = rpcs[0].inventory.create_product(sku="bench-1", name="Bench",
                                                       price_cents=100, stock=10)
            pid = product["id"]
            for name in ("plain_inventory", "observed_inventory"):
                with Session(make_engine(database_url(config, name))) as session:
                    domain.create_product(session, "bench-1", "Bench", 100, 10)
                    session.commit()
            url = f"http://127.0.0.1:{port}/api/v1/products/{pid}"
            cases = {
                "rpc get_product (contract)":
                    (rpcs, lambda n: n.inventory.get_product(product_id=pid)),
                "rpc get_product (plain nameko)":
                    (rpcs, lambda n: n.plain_inventory.get_product(product_id=pid)),
                "rpc get_product (plain + telemetry)":
                    (rpcs, lambda n: n.observed_inventory.get_product(product_id=pid)),
                "http GET /products/{id}":
                    (sessions, lambda http: http.get(url).raise_for_status()),
            }
            results = {name: [] for name in cases}
            for _ in range(ROUNDS):  # interleaved, so noise hits every case alike
                for name, (clients, call) in cases.items():
                    results[name].append(rate(clients, call))
            sagas = saga_latencies(f"http://127.0.0.1:{port}/api/v1", rpcs[0])
        finally:
            for proxy in proxies:
                proxy.stop()
            for container in containers:
                container.stop()

    print(f"{CALLS} calls per case, {CONCURRENCY} concurrent, median of {ROUNDS} rounds")
    print(f"{'case':34} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    medians = {}
    for name, rounds in results.items():
        per_s = statistics.median(r[0] for r in rounds)
        medians[name] = per_s
        p50 = statistics.median(r[1] for r in rounds) * 1000
        p99 = statistics.median(r[2] for r in rounds) * 1000
        print(f"{name:34} {per_s:9.0f} {p50:8.2f} {p99:8.2f}")
    # the real inventory has telemetry too: compare it with the plain one that has it
    ratio = medians["rpc get_product (contract)"] / \
        medians["rpc get_product (plain + telemetry)"]
    print(f"contract-checked / plain RPC throughput (both with telemetry): {ratio:.2f}")
    observed = medians["rpc get_product (plain + telemetry)"] / \
        medians["rpc get_product (plain nameko)"]
    print(f"with telemetry (log line + metrics) / plain RPC throughput: {observed:.2f}")
    gateway = medians["http GET /products/{id}"] / medians["rpc get_product (contract)"]
    print(f"HTTP through the gateway / direct RPC throughput: {gateway:.2f}")
    sagas.sort()
    print(f"order saga, POST /orders -> confirmed, {len(sagas)} orders one at a time: "
          f"p50 {sagas[len(sagas) // 2] * 1000:.0f} ms, "
          f"p90 {sagas[int(len(sagas) * 0.9)] * 1000:.0f} ms, "
          f"max {sagas[-1] * 1000:.0f} ms (API.md allows 2000 ms)")


def saga_latencies(api, n, orders=SAGAS):
    """Seconds from each order's POST until GET shows it confirmed (5 ms polls)."""
    http = requests.Session()
    product = n.inventory.create_product(sku="bench-saga", name="Saga", price_cents=100,
                                         stock=orders)
    email = "bench@example.com"
    http.post(f"{api}/auth/register", json={"email": email, "password": "bench password",
                                            "name": "Bench"}).raise_for_status()
    token = http.post(f"{api}/auth/token", json={"email": email,
                                                 "password": "bench password"}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    took = []
    for _ in range(orders):
        started = time.perf_counter()
        order = http.post(f"{api}/orders", headers=headers, json={
            "items": [{"product_id": product["id"], "quantity": 1}],
            "payment": {"card_token": "tok_bench"}}).json()
        while http.get(f"{api}/orders/{order['id']}",
                       headers=headers).json()["status"] != "confirmed":
            eventlet.sleep(0.005)
        took.append(time.perf_counter() - started)
    return took


if __name__ == "__main__":
    main()
