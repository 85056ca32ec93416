"""Rate limits through the gateway, counted in the machine's real Redis."""
import pytest
import requests

from tests.integration.conftest import REDIS_URL

LIMITS = dict(AUTH_RATE_LIMIT="3/60", API_RATE_LIMIT="5/60", REDIS_URL=REDIS_URL)


def login(mesh, email, password="wrong password"):
    return mesh("POST", "/api/v1/auth/token", json={"email": email, "password": password})


@pytest.fixture
def gateways(start_mesh, start_service, redis_prefix):
    """Two gateways sharing one Redis, in front of one set of services."""
    from gateway import GatewayService
    from mesh.testing import free_port
    from tests.integration.conftest import Client

    def start(**limits):
        limits = {**LIMITS, **limits}
        first = start_mesh(["accounts", "inventory", "gateway"],
                           RATE_LIMIT_PREFIX=redis_prefix,
                           OPS_PORTS={"gateway": free_port()}, **limits)
        port, ops = free_port(), {"gateway": free_port()}
        start_service(GatewayService, GATEWAY_PORT=port, RATE_LIMIT_PREFIX=redis_prefix,
                      OPS_PORTS=ops, **limits)
        return first, Client(f"http://127.0.0.1:{port}", {**first.config, "OPS_PORTS": ops})
    return start


def gateway_metrics(client):
    """The gateway's /metrics, from its operations port."""
    port = client.config["OPS_PORTS"]["gateway"]
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def test_a_flood_of_logins_is_refused_across_gateways(gateways):
    first, second = gateways(API_RATE_LIMIT="100/60")
    email = first.register()
    answers = [login(first, email).status_code, login(second, email).status_code,
               login(first, email).status_code]
    assert answers == [401, 401, 401]
    flooded = login(second, email, "correct horse")
    assert flooded.status_code == 429
    assert flooded.json()["error"]["code"] == "rate_limited"
    assert int(flooded.headers["Retry-After"]) in range(1, 61)
    # the gateway that refused counts it, by limit
    counted = 'mesh_http_rate_limited_total{limit="auth",service="gateway"}'
    assert f"{counted} 1.0" in gateway_metrics(second)
    assert counted not in gateway_metrics(first)
    # another account from the same client is not held back
    other = first.register()
    assert login(second, other, "correct horse").status_code == 200


def test_the_api_limit_counts_per_client(gateways):
    first, second = gateways()
    statuses = [first("GET", "/api/v1/products").status_code for _ in range(3)] + \
        [second("GET", "/api/v1/products").status_code for _ in range(3)]
    assert statuses == [200] * 5 + [429]
    assert first("GET", "/health").status_code == 200  # operations are not limited


def test_logins_count_against_the_api_limit_too(gateways):
    first, second = gateways(API_RATE_LIMIT="3/60")
    statuses = [login(first, f"nobody-{n}@example.com").status_code for n in range(2)] + \
        [login(second, "nobody-2@example.com").status_code,
         login(second, "nobody-3@example.com").status_code]
    assert statuses == [401, 401, 401, 429]


@pytest.mark.parametrize("hops,spoofed_gets_through", [(0, False), (1, True)])
def test_limits_key_on_the_client_the_trusted_proxy_saw(start_service, redis_prefix, hops,
                                                        spoofed_gets_through):
    """TRUSTED_PROXIES=1: a load balancer's X-Forwarded-For names the client; with 0
    (no proxy) the header is the client's own word and changes nothing."""
    from gateway import GatewayService
    from mesh.testing import free_port

    port = free_port()
    start_service(GatewayService, GATEWAY_PORT=port, RATE_LIMIT_PREFIX=redis_prefix,
                  TRUSTED_PROXIES=hops, **{**LIMITS, "API_RATE_LIMIT": "2/60"})

    def get(client):
        return requests.get(f"http://127.0.0.1:{port}/api/v1/products", timeout=5,
                            headers={"X-Forwarded-For": client}).status_code

    assert [get("198.51.100.7") for _ in range(3)][-1] == 429
    assert (get("198.51.100.8") != 429) is spoofed_gets_through
