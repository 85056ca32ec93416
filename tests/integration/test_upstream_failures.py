"""The gateway fails fast and clearly when a service is gone, slow or failing."""
import time

import eventlet
import requests

from contracts.inventory import CONTRACT as INVENTORY
from gateway import GatewayService
from mesh.messaging.rpc import rpc
from mesh.testing import BrokerProxy, free_port, wait_until
from services.inventory.service import InventoryService
from tests.integration.conftest import Client

QUICK = dict(RPC_TIMEOUT=1, CIRCUIT_FAIL_MAX=2, CIRCUIT_RESET_SECONDS=1)


class SlowInventory:
    """Answers too late: a delay injected in place of the real service."""

    name = "inventory"
    contract = INVENTORY
    delay = 3

    @rpc
    def list_products(self, limit, offset):
        eventlet.sleep(self.delay)
        return {"items": [], "total": 0, "limit": limit, "offset": offset}


class SteadyInventory(SlowInventory):
    """Answers every call after one second, however many run at once."""

    delay = 1


def timed(mesh, path="/api/v1/products", http=None):
    started = time.monotonic()
    response = http.get(mesh.base + path, timeout=30) if http else mesh("GET", path)
    return response, time.monotonic() - started


def concurrently(mesh, calls):
    """`calls` GETs at once, each on a connection of its own: [(response, seconds)]."""
    pool = eventlet.GreenPool(calls)
    return list(pool.imap(lambda _: timed(mesh, http=requests.Session()), range(calls)))


def test_calls_to_one_service_run_concurrently(start_mesh, start_service):
    mesh = start_mesh(["accounts", "gateway"], RPC_TIMEOUT=5)
    start_service(SteadyInventory, RPC_TIMEOUT=5)
    time.sleep(1.5)  # seen as present
    answers = concurrently(mesh, 8)
    # one at a time they would take 8 s; together, about one
    assert all(r.status_code == 200 for r, _ in answers), [r.text for r, _ in answers]
    assert max(seconds for _, seconds in answers) < 3


def test_each_call_times_out_counted_from_when_it_was_made(start_mesh, start_service):
    mesh = start_mesh(["accounts", "gateway"], RPC_TIMEOUT=1, CIRCUIT_FAIL_MAX=100)
    start_service(SlowInventory, RPC_TIMEOUT=1)
    time.sleep(1.5)
    answers = concurrently(mesh, 6)
    assert [r.status_code for r, _ in answers] == [504] * 6
    assert max(seconds for _, seconds in answers) < 2.5  # not 1, 2, ... 6 s


def test_a_stopped_service_gets_503_at_once_then_comes_back(start_mesh, start_service):
    mesh = start_mesh(["accounts", "inventory", "gateway"], **QUICK)
    assert mesh("GET", "/api/v1/products").status_code == 200
    inventory = [c for c in start_service.started if c.service_name == "inventory"][0]
    inventory.stop()
    time.sleep(1.5)  # the gateway notices within a second
    response, seconds = timed(mesh)
    assert response.status_code == 503 and seconds < 0.5
    error = response.json()["error"]
    assert error["code"] == "service_unavailable" and "Traceback" not in response.text
    assert int(response.headers["Retry-After"]) >= 1
    start_service(InventoryService, **QUICK)
    wait_until(lambda: mesh("GET", "/api/v1/products").status_code == 200)


def test_a_slow_service_gets_504_then_its_circuit_opens_then_closes(start_mesh,
                                                                     start_service):
    mesh = start_mesh(["accounts", "gateway"], **QUICK)
    slow = start_service(SlowInventory, **QUICK)
    time.sleep(1.5)  # seen as present
    for _ in range(2):
        response, seconds = timed(mesh)
        assert response.status_code == 504 and 0.9 < seconds < 2.5
        assert response.json()["error"]["code"] == "upstream_timeout"
    response, seconds = timed(mesh)  # the circuit is open now
    assert response.status_code == 503 and seconds < 0.5
    assert "circuit" in response.json()["error"]["message"]
    slow.stop()
    start_service(InventoryService, **QUICK)
    # after CIRCUIT_RESET_SECONDS one probe goes through; its success closes it
    wait_until(lambda: mesh("GET", "/api/v1/products").status_code == 200)
    assert all(mesh("GET", "/api/v1/products").status_code == 200 for _ in range(3))


def test_a_service_never_started_gets_503_at_once(start_mesh):
    mesh = start_mesh(["accounts", "gateway"], RPC_TIMEOUT=5)
    for _ in range(3):  # before and after the presence watcher's first look
        response, seconds = timed(mesh)
        assert response.status_code == 503 and seconds < 2.5, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        time.sleep(0.6)


def test_a_full_gateway_answers_503_at_once_and_health_still_answers(start_mesh,
                                                                      start_service):
    workers = {"gateway": 7}  # 2 for API requests, 5 kept for probes and scrapes
    mesh = start_mesh(["accounts", "gateway"], RPC_TIMEOUT=5, WORKERS=workers)
    start_service(SteadyInventory, RPC_TIMEOUT=5, WORKERS=workers)
    time.sleep(1.5)
    pool = eventlet.GreenPool(10)
    calls = [pool.spawn(timed, mesh, "/api/v1/products", requests.Session())
             for _ in range(6)]
    eventlet.sleep(0.3)  # two are with inventory now
    probes = [timed(mesh, "/health", requests.Session()) for _ in range(10)]
    assert all(r.status_code == 200 and s < 0.5 for r, s in probes)
    answers = [call.wait() for call in calls]
    assert sorted(r.status_code for r, _ in answers) == [200, 200, 503, 503, 503, 503]
    for response, seconds in answers:
        if response.status_code == 503:
            assert seconds < 0.5 and response.headers["Retry-After"] == "1"


class CountingInventory(SlowInventory):
    """Slow, one call at a time, and counts the calls it started."""

    started = 0

    @rpc
    def list_products(self, limit, offset):
        CountingInventory.started += 1
        eventlet.sleep(2)
        return {"items": [], "total": 0, "limit": limit, "offset": offset}


def test_a_request_its_caller_gave_up_on_is_never_started(start_mesh, start_service):
    CountingInventory.started = 0
    mesh = start_mesh(["accounts", "gateway"], RPC_TIMEOUT=1, CIRCUIT_FAIL_MAX=100)
    start_service(CountingInventory, RPC_TIMEOUT=1, WORKERS={"inventory": 1})
    time.sleep(1.5)
    answers = concurrently(mesh, 3)
    assert [r.status_code for r, _ in answers] == [504] * 3
    time.sleep(5)  # long enough for the other two to have run, had they been kept
    assert CountingInventory.started == 1


def test_with_the_broker_gone_the_gateway_answers_503_at_once(start_mesh, start_service,
                                                              mesh_config):
    start_mesh(["accounts", "inventory"])
    proxy = BrokerProxy()
    vhost = mesh_config["AMQP_URI"].rsplit("/", 1)[1]
    port = free_port()
    container = start_service(
        GatewayService, GATEWAY_PORT=port,
        AMQP_URI=f"pyamqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}")
    gateway = Client(f"http://127.0.0.1:{port}", mesh_config)
    wait_until(lambda: gateway("GET", "/api/v1/products").status_code == 200)
    try:
        proxy.block()
        time.sleep(2)  # the gateway's watcher has noticed
        for _ in range(3):
            response, seconds = timed(gateway)
            assert response.status_code == 503 and seconds < 1, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            assert int(response.headers["Retry-After"]) >= 1
        proxy.unblock()
        wait_until(lambda: gateway("GET", "/api/v1/products").status_code == 200, 30)
    finally:
        if proxy.server.dead:
            proxy.unblock()
        container.stop()  # while its broker is reachable: stopping talks to it
        proxy.close()


def test_with_redis_gone_the_limits_answer_503_or_let_through_as_configured(start_mesh):
    closed = start_mesh(["accounts", "inventory", "gateway"],
                        REDIS_URL="redis://127.0.0.1:1/0")  # nobody listens there
    response, seconds = timed(closed)
    assert response.status_code == 503 and seconds < 2
    assert response.headers["Retry-After"] == "5"
    open_ = start_mesh(["gateway"], REDIS_URL="redis://127.0.0.1:1/0",
                       RATE_LIMIT_ON_ERROR="open")
    assert open_("GET", "/api/v1/products").status_code == 200
