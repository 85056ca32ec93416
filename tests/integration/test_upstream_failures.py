"""The gateway fails fast and clearly when a service is gone, slow or failing."""
import time

import eventlet

from contracts.inventory import CONTRACT as INVENTORY
from mesh.rpc import rpc
from mesh.testing import wait_until
from services.inventory.service import InventoryService

QUICK = dict(RPC_TIMEOUT=1, CIRCUIT_FAIL_MAX=2, CIRCUIT_RESET_SECONDS=1)


class SlowInventory:
    """Answers too late: a delay injected in place of the real service."""

    name = "inventory"
    contract = INVENTORY

    @rpc
    def list_products(self, limit, offset):
        eventlet.sleep(3)
        return {"items": [], "total": 0, "limit": limit, "offset": offset}


def timed(mesh, path="/api/v1/products"):
    started = time.monotonic()
    response = mesh("GET", path)
    return response, time.monotonic() - started


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
