"""Calls between services follow their target's policy (RPC_TARGETS): orders asking
inventory fails fast while inventory is down and recovers by itself; an idempotent
read survives a lost attempt, a write is never sent twice."""
import datetime as dt
import time

import eventlet
from nameko.testing.services import dummy, entrypoint_hook
from prometheus_client import generate_latest

from contracts.inventory import CONTRACT as INVENTORY
from mesh.messaging.rpc import ContractReplyListener, ReplyConsumer, ServiceRpc, rpc
from mesh.testing import wait_until
from services.inventory.service import InventoryService

SERVICES = ["accounts", "inventory", "orders", "gateway"]


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def container_of(start_service, name):
    return [c for c in start_service.started if c.service_name == name][-1]


def call_metrics(container):
    """The registry holding a container's mesh_rpc_* and mesh_circuit_state."""
    (calls,) = [d for d in container.dependencies if isinstance(d, ServiceRpc)]
    return calls.metrics.registry


def sample(container, name, **labels):
    registry = call_metrics(container)
    return registry.get_sample_value(name, {"service": container.service_name,
                                            **labels}) or 0


def assert_busy(response):
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "service_unavailable" and "Traceback" not in response.text
    assert int(response.headers["Retry-After"]) >= 1
    return error


def test_orders_answers_503_at_once_while_inventory_is_stopped_then_recovers(
        start_mesh, start_service):
    mesh = start_mesh(SERVICES, RPC_TIMEOUT=5)
    token, product = mesh.customer(), mesh.product(stock=50)
    assert mesh.order(token, product["id"]).status_code == 202
    container_of(start_service, "inventory").stop()
    time.sleep(1.5)  # orders' presence watcher looks every second
    for _ in range(3):
        response, seconds = timed(lambda: mesh.order(token, product["id"]))
        error = assert_busy(response)
        assert seconds < 2, seconds  # well under RPC_TIMEOUT (5 s), which it waited before
        assert "inventory is unavailable: no running instance" in error["message"]
    orders = container_of(start_service, "orders")
    assert sample(orders, "mesh_rpc_rejected_total", target="inventory",
                  cause="no_instance") >= 3
    assert sample(orders, "mesh_rpc_calls_total", target="inventory", method="get_prices",
                  outcome="refused") >= 3
    start_service(InventoryService, RPC_TIMEOUT=5)
    wait_until(lambda: mesh.order(token, product["id"]).status_code == 202, 15,
               "orders placing orders again")
    assert sample(orders, "mesh_rpc_calls_total", target="inventory", method="get_prices",
                  outcome="ok") >= 2


class SlowInventory:
    """An inventory whose prices never come in time."""

    name = "inventory"
    contract = INVENTORY

    @rpc
    def get_prices(self, product_ids):
        eventlet.sleep(3)
        return {"prices": {str(i): 100 for i in product_ids}}


def test_a_slow_inventory_opens_orders_circuit_then_a_probe_closes_it(start_mesh,
                                                                      start_service):
    quick = dict(RPC_TARGETS={"inventory": {"timeout": 1, "circuit_fail_max": 2,
                                            "circuit_reset_seconds": 1}})
    mesh = start_mesh(SERVICES, **quick)
    token, product = mesh.customer(), mesh.product(stock=50)
    container_of(start_service, "inventory").stop()
    slow = start_service(SlowInventory, **quick)
    time.sleep(1.5)  # seen as present
    for _ in range(2):  # orders waits its timeout for inventory (1 s), then says Busy
        response, seconds = timed(lambda: mesh.order(token, product["id"]))
        error = assert_busy(response)
        assert 0.9 < seconds < 3.5 and "did not answer within 1 s" in error["message"]
    response, seconds = timed(lambda: mesh.order(token, product["id"]))
    assert "circuit is open" in assert_busy(response)["message"] and seconds < 0.9
    orders = container_of(start_service, "orders")
    assert sample(orders, "mesh_circuit_state", target="inventory") == 2
    assert sample(orders, "mesh_rpc_calls_total", target="inventory", method="get_prices",
                  outcome="timeout") == 2
    slow.stop()
    start_service(InventoryService, **quick)
    # after circuit_reset_seconds one probe goes through; its success closes it
    wait_until(lambda: mesh.order(token, product["id"]).status_code == 202, 15,
               "orders placing orders again")
    assert sample(orders, "mesh_circuit_state", target="inventory") == 0


class ForgetfulInventory:
    """Loses the first request of each method (answers it too late), then answers."""

    name = "inventory"
    contract = INVENTORY
    started = {}

    def _first_is_lost(self, method):
        ForgetfulInventory.started[method] = ForgetfulInventory.started.get(method, 0) + 1
        if ForgetfulInventory.started[method] == 1:
            eventlet.sleep(3)

    def _product(self, product_id, stock):
        return {"id": product_id, "sku": "sku-1", "name": "Thing", "price_cents": 100,
                "stock": stock, "created_at": dt.datetime.now(dt.timezone.utc)}

    @rpc
    def get_prices(self, product_ids):
        self._first_is_lost("get_prices")
        return {"prices": {str(i): 100 for i in product_ids}}

    @rpc
    def get_product(self, product_id):
        self._first_is_lost("get_product")
        return self._product(product_id, 5)

    @rpc
    def restock(self, product_id, quantity):
        self._first_is_lost("restock")
        return self._product(product_id, 5 + quantity)


def test_an_idempotent_read_survives_a_lost_attempt_and_a_write_is_never_sent_twice(
        start_mesh, start_service):
    ForgetfulInventory.started = {}
    retrying = dict(RPC_TARGETS={"inventory": {"timeout": 1, "retries": 1,
                                               "retry_backoff": 0.05}})
    mesh = start_mesh(["accounts", "orders", "gateway"], **retrying)
    start_service(ForgetfulInventory, **retrying)
    time.sleep(1.5)  # seen as present
    admin = mesh.admin_token()
    # the gateway's read, and orders' read inside a write of its own
    response, seconds = timed(lambda: mesh("GET", "/api/v1/products/7"))
    assert response.status_code == 200 and response.json()["id"] == 7, response.text
    assert 0.9 < seconds < 3.5  # one timeout, then the answer
    assert mesh.order(mesh.customer(), 7).status_code == 202
    # a write may have been done before its answer was lost: the client decides
    response = mesh("POST", "/api/v1/products/7/restock", admin, json={"quantity": 1})
    assert response.status_code == 504, response.text
    time.sleep(2.5)  # were it retried, the second attempt would have started by now
    assert ForgetfulInventory.started == {"get_product": 2, "get_prices": 2, "restock": 1}
    gateway, orders = (container_of(start_service, "gateway"),
                       container_of(start_service, "orders"))
    assert sample(gateway, "mesh_rpc_retries_total", target="inventory",
                  method="get_product") == 1
    assert sample(orders, "mesh_rpc_retries_total", target="inventory",
                  method="get_prices") == 1
    assert sample(gateway, "mesh_rpc_calls_total", target="inventory", method="restock",
                  outcome="timeout") == 1


def test_a_nested_call_waits_no_longer_than_the_request_it_serves(start_mesh,
                                                                    start_service):
    # the gateway waits 1 s for orders; orders' own limit for inventory is 10 s
    nested = dict(RPC_TARGETS={"orders": {"timeout": 1}, "inventory": {"timeout": 10}})
    mesh = start_mesh(SERVICES, **nested)
    token, product = mesh.customer(), mesh.product(stock=50)
    container_of(start_service, "inventory").stop()
    start_service(SlowInventory, **nested)  # answers after 3 s
    time.sleep(1.5)  # seen as present
    response = mesh.order(token, product["id"])
    assert response.status_code == 504, response.text
    orders = container_of(start_service, "orders")

    def outcomes():
        return {outcome: sample(orders, "mesh_rpc_calls_total", target="inventory",
                                method="get_prices", outcome=outcome)
                for outcome in ("ok", "timeout")}
    wait_until(lambda: sum(outcomes().values()), 15, "orders' call to inventory to end")
    # it gave up with the gateway instead of waiting for the answer (at 3 s)
    assert outcomes() == {"ok": 0, "timeout": 1}


class TwoCallers:
    """Two dependencies calling one service: one guard, one series of each gauge."""

    name = "two_callers"
    inventory = ServiceRpc(INVENTORY)
    prices = ServiceRpc(INVENTORY, methods=["get_prices"])

    @dummy
    def both(self, product_id):
        return (self.inventory.get_product(product_id=product_id)["id"],
                self.prices.get_prices(product_ids=[product_id])["prices"])


def test_two_callers_of_one_service_share_its_guard_and_export_each_metric_once(
        start_service, rpc_client, mesh_config):
    start_service(InventoryService)
    product = rpc_client.inventory.create_product(sku="two-callers-1", name="Two",
                                                  price_cents=300, stock=1)
    container = start_service(TwoCallers, SERVICES={
        **mesh_config["SERVICES"], "two_callers": f"{__name__}:TwoCallers"})
    with entrypoint_hook(container, "both") as both:
        assert both(product["id"]) == (product["id"], {str(product["id"]): 300})
    callers = [d for d in container.dependencies if isinstance(d, ServiceRpc)]
    assert len(callers) == 2 and callers[0].guards["inventory"] is callers[1].guards["inventory"]
    page = generate_latest(callers[0].metrics.registry).decode()
    for gauge in ("mesh_circuit_state", "mesh_target_present", "mesh_rpc_in_flight"):
        series = [line for line in page.splitlines() if line.startswith(gauge + "{")]
        assert series == [f'{gauge}{{service="two_callers",target="inventory"}} 0.0'
                          if gauge != "mesh_target_present" else
                          f'{gauge}{{service="two_callers",target="inventory"}} 1.0'], page
    watchers = [t for t in container._managed_threads.values()
                if t == "service presence"]
    assert len(watchers) == 1


def test_a_call_made_while_the_reply_queue_is_renewed_waits_for_it(
        start_service, rpc_client, mesh_config, monkeypatch):
    """After a lost connection the reply consumer declares a new reply queue; a
    call made before it exists waits for it, else its answer would be dropped
    (no queue takes it) and the call would time out."""
    start_service(InventoryService)
    product = rpc_client.inventory.create_product(sku="renewed-replies-1", name="Renewed",
                                                  price_cents=300, stock=1)
    renewed, connections = [], []
    renew = ContractReplyListener.renew

    def counted_renew(listener):
        renewed.append(listener)
        renew(listener)
    monkeypatch.setattr(ContractReplyListener, "renew", counted_renew)
    get_consumers, ready = ReplyConsumer.get_consumers, ReplyConsumer.on_consume_ready

    def slow_after_a_loss(consumer, consumer_cls, channel):
        if connections:  # not the first: the new reply queue comes 0.5 s late
            eventlet.sleep(0.5)
        return get_consumers(consumer, consumer_cls, channel)

    def remembered(consumer, connection, *args, **kwargs):
        connections.append(connection)
        return ready(consumer, connection, *args, **kwargs)
    monkeypatch.setattr(ReplyConsumer, "get_consumers", slow_after_a_loss)
    monkeypatch.setattr(ReplyConsumer, "on_consume_ready", remembered)
    container = start_service(TwoCallers, SERVICES={
        **mesh_config["SERVICES"], "two_callers": f"{__name__}:TwoCallers"},
        RPC_TARGETS={"inventory": {"timeout": 3}})
    with entrypoint_hook(container, "both") as both:
        assert both(product["id"])[0] == product["id"]
        assert len(renewed) == 1 and len(connections) == 1
        connections[0].connection.sock.close()  # as if its node were lost
        wait_until(lambda: len(renewed) == 2, 5, "the reply queue renewed")
        assert not renewed[-1].ready.ready()
        answer, seconds = timed(lambda: both(product["id"]))
    assert answer[0] == product["id"]
    assert 0.2 < seconds < 3  # it waited for the new queue, not for its timeout
    assert len(connections) == 2
