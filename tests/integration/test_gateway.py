"""The gateway in a real container, with accounts and inventory, over real HTTP."""
import json
import logging
import socket
import time
import uuid

import jwt
import pytest
import requests

from gateway import GatewayService
from mesh.auth.tokens import Tokens, signing_key
from mesh.testing import REDIS_URL, free_port

@pytest.fixture
def mesh(start_mesh):
    return start_mesh()


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.text
    return error


def test_register_token_me(mesh):
    email = mesh.register()
    token = mesh.token(email.upper())
    me = mesh("GET", "/api/v1/me", token)
    assert me.status_code == 200
    assert set(me.json()) == {"id", "email", "name", "role", "status", "created_at"}
    assert me.json()["email"] == email and me.json()["role"] == "customer"
    login = mesh("POST", "/api/v1/auth/token", json={"email": email,
                                                     "password": "correct horse"}).json()
    assert login["token_type"] == "bearer" and login["expires_in"] == 3600


def test_registration_errors(mesh):
    email = mesh.register()
    again = mesh("POST", "/api/v1/auth/register",
                 json={"email": email, "password": "correct horse", "name": "U"})
    assert_error(again, 409, "conflict")
    bad = mesh("POST", "/api/v1/auth/register",
               json={"email": "nope", "password": "x" * 129, "name": "x" * 101})
    error = assert_error(bad, 422, "validation_error")
    assert set(error["fields"]) == {"email", "password", "name"}


def test_wrong_password_and_unknown_email_look_the_same(mesh):
    email = mesh.register()
    wrong = mesh("POST", "/api/v1/auth/token", json={"email": email, "password": "nope"})
    unknown = mesh("POST", "/api/v1/auth/token",
                   json={"email": "x" + email, "password": "correct horse"})
    a, b = assert_error(wrong, 401, "invalid_credentials"), \
        assert_error(unknown, 401, "invalid_credentials")
    assert a["message"] == b["message"]


def forged_tokens(config, user_id):
    now = int(time.time())
    key = signing_key(config)
    claims = {"sub": str(user_id), "role": "admin", "iat": now, "exp": now + 600}
    good = Tokens(key).issue(user_id, "customer")
    header, payload, signature = good.split(".")
    return {
        "expired": Tokens(key).issue(user_id, "admin", now=now - 7200),
        "other_key": jwt.encode(claims, "another-key-" + "z" * 32, algorithm="HS256"),
        "alg_none": jwt.encode(claims, None, algorithm="none"),
        "altered": ".".join([header, jwt.utils.base64url_encode(
            json.dumps(claims).encode()).decode(), signature]),
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize("kind", ["expired", "other_key", "alg_none", "altered",
                                  "garbage"])
def test_forged_tokens_get_401(mesh, kind):
    token = forged_tokens(mesh.config, 1)[kind]
    response = mesh("GET", "/api/v1/me", token)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_products_as_admin_and_public(mesh):
    admin = mesh.admin_token()
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    created = mesh("POST", "/api/v1/products", admin,
                   json={"sku": sku, "name": "Widget", "price_cents": 1999, "stock": 3})
    assert created.status_code == 201, created.text
    product = created.json()
    assert set(product) == {"id", "sku", "name", "price_cents", "stock", "created_at"}
    assert mesh("GET", f"/api/v1/products/{product['id']}").json() == product
    restocked = mesh("POST", f"/api/v1/products/{product['id']}/restock", admin,
                     json={"quantity": 2})
    assert restocked.status_code == 200 and restocked.json()["stock"] == 5
    page = mesh("GET", "/api/v1/products?limit=1&offset=0").json()
    assert page["limit"] == 1 and page["offset"] == 0 and len(page["items"]) == 1
    assert page["total"] >= 1
    dup = mesh("POST", "/api/v1/products", admin,
               json={"sku": sku, "name": "Again", "price_cents": 1})
    assert_error(dup, 409, "conflict")


def test_every_error_status(mesh):
    customer = mesh.token(mesh.register())
    admin = mesh.admin_token()
    body = {"sku": "s1", "name": "n", "price_cents": 1}
    assert_error(mesh("POST", "/api/v1/products", admin, data="{bad",
                      headers={"Content-Type": "application/json"}), 400, "malformed_json")
    assert_error(mesh("POST", "/api/v1/products", json=body), 401, "unauthorized")
    assert_error(mesh("POST", "/api/v1/products", customer, json=body), 403, "forbidden")
    assert_error(mesh("GET", "/api/v1/products/999999999"), 404, "not_found")
    assert_error(mesh("GET", "/api/v1/nowhere"), 404, "not_found")
    assert_error(mesh("POST", "/api/v1/products/999999999/restock", admin,
                      json={"quantity": 1}), 404, "not_found")
    response = mesh("DELETE", "/api/v1/products/1")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    assert_error(mesh("GET", "/api/v1/products/1", headers={
        "Connection": "keep-alive, Upgrade", "Upgrade": "websocket"}), 400, "bad_request")
    assert_error(mesh("POST", "/api/v1/products", admin,
                      data=json.dumps({**body, "name": "x" * (1024 * 1024)}),
                      headers={"Content-Type": "application/json"}),
                 413, "payload_too_large")
    assert_error(mesh("POST", "/api/v1/products", admin, data=json.dumps(body),
                      headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    error = assert_error(mesh("POST", "/api/v1/products", admin,
                              json={**body, "price_cents": 0}), 422, "validation_error")
    assert error["fields"] == {"price_cents": [
        "Must be greater than or equal to 1 and less than or equal to 2147483647."]}
    assert_error(mesh("GET", "/api/v1/products?limit=1000"), 422, "validation_error")


def test_request_ids(mesh):
    kept = mesh("GET", "/api/v1/products", headers={"X-Request-ID": "client-id.1"})
    assert kept.headers["X-Request-ID"] == "client-id.1"
    replaced = mesh("GET", "/api/v1/products", headers={"X-Request-ID": "x" * 65})
    assert replaced.headers["X-Request-ID"] != "x" * 65
    assert len(replaced.headers["X-Request-ID"]) <= 64
    assert mesh("GET", "/health").headers["X-Request-ID"]


def test_a_request_has_one_access_line_the_gateways(mesh, caplog):
    caplog.set_level(logging.DEBUG)  # even where eventlet's logger would show its own
    mesh("GET", "/api/v1/products", headers={"X-Request-ID": "one-line"})
    lines = [r for r in caplog.records if "/api/v1/products" in r.getMessage()
             and not r.name.startswith("urllib3")]  # the client's own line
    assert [(r.name, getattr(r, "request_id", None)) for r in lines] == \
        [("mesh.http.access", "one-line")]


def test_headers_are_safe(mesh):
    response = mesh("GET", "/api/v1/products")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in response.headers


def test_health_and_ready(mesh):
    assert mesh("GET", "/health").json() == {"status": "ok"}
    ready = mesh("GET", "/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {
        "broker": "ok", "accounts": "ok", "inventory": "ok", "orders": "ok",
        "payments": "ok", "notifications": "ok"}}


def test_a_missing_service_is_named_and_answered_quickly(start_service, mesh_config):
    port = free_port()
    start_service(GatewayService, GATEWAY_PORT=port, RPC_TIMEOUT=1)
    base = f"http://127.0.0.1:{port}"
    # no service runs: the gateway still serves (what needs one answers 503), so
    # it stays in its load balancer and names what is missing
    ready = requests.get(base + "/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["checks"] == {"broker": "ok", "accounts": "no instance",
                                      "inventory": "no instance", "orders": "no instance",
                                      "payments": "no instance",
                                      "notifications": "no instance"}
    started = time.monotonic()
    response = requests.get(base + "/api/v1/products", timeout=5)
    assert response.status_code in (503, 504)
    assert response.json()["error"]["code"] in ("service_unavailable", "upstream_timeout")
    assert time.monotonic() - started < 3


def test_keep_alive_connection_does_not_hold_up_stop(start_service, mesh_config):
    port = free_port()
    container = start_service(GatewayService, GATEWAY_PORT=port)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    assert b"200 OK" in sock.recv(4096)
    started = time.monotonic()
    container.stop()
    assert time.monotonic() - started < 5
    sock.settimeout(3)
    assert sock.recv(100) == b""  # closed by the server, not left dangling
    sock.close()


def test_openapi_and_docs_are_served_offline(mesh):
    document = mesh("GET", "/api/v1/openapi.json")
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.")
    assert "/api/v1/orders/{order_id}/cancel" in document.json()["paths"]
    page = mesh("GET", "/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    for asset in ("/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/init.js"):
        response = mesh("GET", asset)
        assert response.status_code == 200 and len(response.content) > 20, asset
    assert "/api/v1/openapi.json" in mesh("GET", "/docs/init.js").text
    missing = mesh("GET", "/docs/index.html")
    assert_error(missing, 404, "not_found")
    assert mesh("GET", "/docs/..%2Fsetup.cfg").status_code == 404


def test_cors_is_off_by_default(mesh):
    response = mesh("GET", "/api/v1/products", headers={"Origin": "https://shop.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = mesh("OPTIONS", "/api/v1/products", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 405


def test_cors_for_configured_origins_only(start_mesh):
    mesh = start_mesh(["accounts", "inventory", "gateway"],
                      CORS_ORIGINS="https://shop.example, https://admin.example")
    preflight = mesh("OPTIONS", "/api/v1/products", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert set(preflight.headers["Access-Control-Allow-Methods"].split(", ")) >= \
        {"GET", "POST"}
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    response = mesh("GET", "/api/v1/products", headers={"Origin": "https://admin.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    stranger = mesh("GET", "/api/v1/products", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    assert mesh("OPTIONS", "/api/v1/nowhere", headers={
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "GET"}).status_code == 404


def test_a_token_whose_user_no_longer_exists_is_refused(mesh):
    import sqlalchemy

    from mesh.data.db import database_url

    token = mesh.token(mesh.register())
    user_id = Tokens(signing_key(mesh.config)).verify(token).user_id
    engine = sqlalchemy.create_engine(database_url(mesh.config, "accounts"))
    with engine.begin() as connection:  # as if the account had been removed
        connection.execute(sqlalchemy.text("DELETE FROM users WHERE id = :id"),
                           {"id": user_id})
    engine.dispose()
    response = mesh("GET", "/api/v1/products", token)  # a public route: no check
    assert response.status_code == 200
    refused = mesh("GET", "/api/v1/orders", token)
    assert_error(refused, 401, "unauthorized")
    assert "no longer exists" in refused.json()["error"]["message"]


def test_unstorable_text_is_a_422_and_never_opens_a_circuit(start_mesh):
    mesh = start_mesh(CIRCUIT_FAIL_MAX=2)
    email = mesh.register()
    hostile = [  # raw JSON: a lone surrogate, a NUL
        ("/api/v1/auth/token", f'{{"email": "{email}", "password": "\\ud800\\ud800"}}'),
        ("/api/v1/auth/token", f'{{"email": "\\ud800{email}", "password": "x"}}'),
        ("/api/v1/auth/register",
         '{"email": "n@example.com", "password": "correct horse", "name": "a\\u0000b"}'),
        ("/api/v1/auth/register",
         '{"email": "s@example.com", "password": "\\udfff correct horse", "name": "S"}'),
    ]
    for path, body in hostile * 2:
        response = mesh("POST", path, data=body, headers={"Content-Type": "application/json"})
        error = assert_error(response, 422, "validation_error")
        assert "lone surrogate" in json.dumps(error["fields"])
    assert mesh.token(email)  # accounts' circuit is still closed


def test_an_email_is_one_account_however_it_is_written(start_mesh):
    mesh = start_mesh(AUTH_RATE_LIMIT="3/60")
    email = mesh.register()
    for variant in (email, email.upper(), f" {email}", f"{email}\u2003"):
        response = mesh("POST", "/api/v1/auth/token",
                        json={"email": variant, "password": "wrong horse"})
        expected = (401, "invalid_credentials") if variant != f"{email}\u2003" else \
            (429, "rate_limited")
        assert_error(response, *expected)
    # the right password, from the same address, is refused too until the window ends
    assert_error(mesh("POST", "/api/v1/auth/token",
                      json={"email": f" {email.upper()} ", "password": "correct horse"}),
                 429, "rate_limited")


def raw_connection(mesh):
    host, port = mesh.base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_a_slow_or_idle_client_is_let_go(start_mesh):
    mesh = start_mesh(["accounts", "gateway"], HTTP_READ_TIMEOUT=1, HTTP_IDLE_TIMEOUT=1)
    half_sent = raw_connection(mesh)
    half_sent.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    idle = raw_connection(mesh)
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    assert half_sent.recv(4096) == b""  # closed by the gateway
    assert b"200 OK" in idle.recv(4096) and idle.recv(4096) == b""
    assert time.monotonic() - started < 5
    assert mesh("GET", "/health").status_code == 200


def test_connections_beyond_the_cap_are_answered_503(start_mesh):
    mesh = start_mesh(["accounts", "gateway"], HTTP_MAX_CONNECTIONS=3)
    held = [raw_connection(mesh) for _ in range(3)]
    time.sleep(0.3)
    extra = raw_connection(mesh)
    answer = extra.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503") and b"service_unavailable" in answer
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert requests.get(mesh.base + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize("redis_url,on_error,ready,redis_ok", [
    (REDIS_URL, "closed", True, True),
    ("redis://127.0.0.1:{dead}/0", "closed", False, False),  # nothing listens there
    # limits that fail open serve without Redis: still ready, and Redis named
    ("redis://127.0.0.1:{dead}/0", "open", True, False),
])
def test_ready_checks_redis_when_it_is_set(start_service, redis_url, on_error, ready,
                                           redis_ok):
    port = free_port()
    start_service(GatewayService, GATEWAY_PORT=port, RATE_LIMIT_ON_ERROR=on_error,
                  REDIS_URL=redis_url.format(dead=free_port()))
    answer = requests.get(f"http://127.0.0.1:{port}/ready", timeout=10)
    assert answer.status_code == (200 if ready else 503)
    assert answer.json()["checks"]["broker"] == "ok"
    assert (answer.json()["checks"]["redis"] == "ok") is redis_ok


def test_events_are_documented_beside_the_http_api(mesh):
    document = mesh("GET", "/api/v1/asyncapi.json")
    assert document.status_code == 200
    assert document.json()["asyncapi"] == "3.0.0"
    assert "orders.order_created" in document.json()["channels"]
    page = mesh("GET", "/docs/events")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "payments handles payment_requested" in page.text


def test_ready_is_rate_limited_like_the_api(start_service):
    port = free_port()
    start_service(GatewayService, GATEWAY_PORT=port, API_RATE_LIMIT="2/60")
    answers = [requests.get(f"http://127.0.0.1:{port}/ready", timeout=10).status_code
               for _ in range(3)]
    assert answers[2] == 429, answers
    # /health stays free: a liveness probe is never refused
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
