import time
import uuid

import pytest

from mesh.core.services import import_service
from mesh.testing import REDIS_URL, GatewayClient, free_port  # noqa: F401 (REDIS_URL: for the limit tests)

ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "admin password"


class Client(GatewayClient):
    """The plugin's gateway client, with the helpers most of these tests need."""

    def __init__(self, base, config):
        super().__init__(base)
        self.config = config

    def register(self):
        email = f"u-{uuid.uuid4().hex[:10]}@example.com"
        response = self("POST", "/api/v1/auth/register",
                        json={"email": email, "password": "correct horse", "name": "U"})
        assert response.status_code == 201, response.text
        return email

    def token(self, email, password="correct horse"):
        return super().token(email, password)

    def customer(self):
        return self.token(self.register())

    def admin_token(self):
        return self.token(ADMIN_EMAIL, ADMIN_PASSWORD)

    def product(self, stock=5, price_cents=1000):
        response = self("POST", "/api/v1/products", self.admin_token(),
                        json={"sku": f"sku-{uuid.uuid4().hex[:10]}", "name": "Thing",
                              "price_cents": price_cents, "stock": stock})
        assert response.status_code == 201, response.text
        return response.json()

    def order(self, token, product_id, quantity=1, card="tok_visa", **kwargs):
        return self("POST", "/api/v1/orders", token, json={
            "items": [{"product_id": product_id, "quantity": quantity}],
            "payment": {"card_token": card}}, **kwargs)

    def settled(self, token, order_id, timeout=10):
        """The order once it stops moving (confirmed, rejected or cancelled)."""
        deadline = time.monotonic() + timeout
        while True:
            order = self("GET", f"/api/v1/orders/{order_id}", token).json()
            if order["status"] in ("confirmed", "rejected", "cancelled"):
                return order
            assert time.monotonic() < deadline, order
            time.sleep(0.05)


@pytest.fixture
def uri(mesh_config):
    """The AMQP URI of the test's own vhost."""
    return mesh_config["AMQP_URI"]


@pytest.fixture
def start_mesh(start_service, mesh_config):
    """Start the given services (default: all of config.yaml) and the gateway."""
    def start(names=None, **overrides):
        port = free_port()
        # logins repeat while the admin is being created: not what limits are for here
        overrides = {"GATEWAY_PORT": port, "MESH_ADMIN_EMAIL": ADMIN_EMAIL,
                     "MESH_ADMIN_PASSWORD": ADMIN_PASSWORD, "AUTH_RATE_LIMIT": "1000/60",
                     "AUTH_ACCOUNT_RATE_LIMIT": "1000/60",
                     "AUTH_ADDRESS_RATE_LIMIT": "1000/60",
                     **overrides}
        names = names or list(mesh_config["SERVICES"])
        for name in names:
            start_service(import_service(mesh_config["SERVICES"][name]), **overrides)
        return Client(f"http://127.0.0.1:{port}", {**mesh_config, **overrides})
    return start


@pytest.fixture
def redis_prefix():
    """A key prefix for this test's counters in the real Redis; its keys are
    deleted afterwards (and no others)."""
    import redis

    prefix = f"mesh-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()
