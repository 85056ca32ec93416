"""The whole mesh, started as `make run` starts it, driven over HTTP and `nameko shell`."""
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

from mesh.testing import load_test_config
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, BIN, REPO


def test_ready_within_30_seconds_and_url_printed(mesh):
    line = mesh.wait_for("ready:")
    assert mesh.base in line
    assert mesh.http("GET", "/ready").json()["status"] == "ready"
    # on a pipe, every line is a JSON object naming its service
    records = mesh.records()
    assert len(records) == len(mesh.lines)
    assert {r["service"] for r in records} >= {
        "mesh", "accounts", "inventory", "orders", "payments", "notifications", "gateway"}


def test_each_service_connects_as_its_own_broker_user(mesh):
    from urllib.parse import quote

    from mesh.testing import RabbitAdmin

    vhost = mesh.env["AMQP_URI"].rsplit("/", 1)[1]
    wanted = {mesh.env["BROKER_USER_PREFIX"] + name for name in
              ("accounts", "inventory", "orders", "payments", "notifications", "gateway")}
    deadline = time.monotonic() + 15  # the management API lists connections late
    while True:
        users = {c["user"] for c in RabbitAdmin()._call("GET", f"vhosts/{quote(vhost)}/"
                                                       "connections").json()}
        if wanted <= users or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert wanted <= users
    assert "guest" not in users  # the mesh's own processes: this test has not connected


def test_the_gateway_hears_accounts_changes_as_its_own_broker_user(mesh):
    """Its instance queues (mesh.messaging.broadcasts) are declared, bound and
    consumed under its identity's grant: a refusal would leave none consumed."""
    from urllib.parse import quote

    from mesh.testing import RabbitAdmin

    vhost = mesh.env["AMQP_URI"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 15  # the management API counts consumers late
    while True:
        heard = {q["name"].split("--")[0] for q in RabbitAdmin()._call(
                     "GET", f"queues/{quote(vhost, safe='')}").json()
                 if "--gateway.forget_user-" in q["name"] and q.get("consumers")}
        if len(heard) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert heard == {f"evt-accounts-{event}" for event in (
        "password_changed", "user_disabled", "user_enabled", "user_deleted")}


def test_http_auth_and_products(mesh):
    email = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
    created = mesh.http("POST", "/api/v1/auth/register",
                        json={"email": email, "password": "correct horse", "name": "E"})
    assert created.status_code == 201, created.text
    customer = mesh.http.token(email, "correct horse")
    assert mesh.http("GET", "/api/v1/me", customer).json()["email"] == email
    admin = mesh.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert mesh.http("GET", "/api/v1/me", admin).json()["role"] == "admin"
    body = {"sku": f"e2e-{uuid.uuid4().hex[:8]}", "name": "E2E", "price_cents": 100,
            "stock": 2}
    assert mesh.http("POST", "/api/v1/products", customer, json=body).status_code == 403
    product = mesh.http("POST", "/api/v1/products", admin, json=body).json()
    restocked = mesh.http("POST", f"/api/v1/products/{product['id']}/restock", admin,
                          json={"quantity": 3})
    assert restocked.json()["stock"] == 5
    assert mesh.http("GET", f"/api/v1/products/{product['id']}").json()["stock"] == 5
    assert mesh.http("GET", "/api/v1/products").json()["total"] >= 1
    mesh.http("POST", "/api/v1/auth/token", json={"email": email, "password": "guessed!"})
    # no password, and not the signing secret, ever reaches the logs
    secret = open(os.path.join(mesh.env["MESH_DATA_DIR"], "jwt_secret")).read().strip()
    for never in ("correct horse", "guessed!", ADMIN_PASSWORD, secret, customer):
        assert never not in mesh.output


def test_nameko_shell_calls_services_with_typed_errors(mesh):
    admin = mesh.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    sku = f"shell-{uuid.uuid4().hex[:8]}"
    product = mesh.http("POST", "/api/v1/products", admin,
                        json={"sku": sku, "name": "Shell", "price_cents": 5}).json()
    script = (
        f"print('SKU=' + n.rpc.inventory.get_product(product_id={product['id']})['sku'])\n"
        "from contracts.errors import NotFound\n"
        "try:\n"
        "    n.rpc.inventory.get_product(product_id=999999999)\n"
        "except NotFound as exc:\n"
        "    print('CAUGHT', type(exc).__name__, exc)\n"
        "\n")
    shell = subprocess.run([str(BIN / "nameko"), "shell", "--config", "config.yaml"],
                           cwd=REPO, env=mesh.env, input=script, text=True,
                           capture_output=True, timeout=60)
    assert f"SKU={sku}" in shell.stdout, shell.stdout + shell.stderr
    assert "CAUGHT NotFound product 999999999 not found" in shell.stdout


def test_mesh_shell_checks_calls_names_them_and_emits_events_handlers_take(mesh):
    from nameko.standalone.rpc import ClusterRpcProxy

    user_id = 700000 + uuid.uuid4().int % 100000
    script = (
        "try:\n"
        "    n.rpc.inventory.get_product(product_id=999999999)\n"
        "except NotFound as exc:\n"
        "    print('CAUGHT', exc, n.last_request_id)\n"
        "\n"
        "try:\n"
        "    n.rpc.inventory.no_such_method\n"
        "except AttributeError as exc:\n"
        "    print('REFUSED', exc)\n"
        "\n"
        "try:\n"
        "    n.emit('accounts', 'user_registered', {'user_id': 'seven'})\n"
        "except Exception as exc:\n"
        "    print('INVALID', type(exc).__name__)\n"
        "\n"
        f"print('EMITTED', n.emit('accounts', 'user_registered', {{'user_id': {user_id}, "
        "'email': 'shell@example.com', 'name': 'Shell'}))\n")
    shell = subprocess.run([str(BIN / "mesh"), "shell"], cwd=REPO, env=mesh.env,
                           input=script, text=True, capture_output=True, timeout=60)
    out = shell.stdout + shell.stderr
    assert "CAUGHT product 999999999 not found shell-" in shell.stdout, out
    assert "REFUSED inventory declares no RPC method 'no_such_method'" in shell.stdout, out
    assert "INVALID ValidationError" in shell.stdout, out
    assert "EMITTED " in shell.stdout, out
    # the envelope is one notifications' handler accepts: a welcome, not a dead letter
    deadline = time.monotonic() + 15
    with ClusterRpcProxy({"AMQP_URI": mesh.env["AMQP_URI"]}, timeout=10) as rpc:
        while rpc.notifications.list_notifications(user_id=user_id)["total"] != 1:
            assert time.monotonic() < deadline, mesh.story()
            time.sleep(0.2)


def test_a_crashed_service_is_restarted(mesh):
    pid = next(pid for pid, name in mesh.children().items() if name == "inventory")
    os.kill(pid, signal.SIGKILL)
    mesh.wait_for("inventory exited with code -9; restarting in", timeout=10)
    mesh.wait_for("restarting inventory", timeout=10)
    deadline = time.monotonic() + 30
    while mesh.http("GET", "/api/v1/products").status_code != 200:
        assert time.monotonic() < deadline, mesh.output
        time.sleep(0.3)


def test_sigterm_stops_everything_within_10_seconds_despite_keep_alive(start_mesh):
    mesh = start_mesh()
    mesh.wait_for("ready:", timeout=30)
    children = mesh.children()
    assert sorted(children.values()) == sorted(
        load_test_config(str(REPO / "config.yaml"))["SERVICES"])
    idle = socket.create_connection(("127.0.0.1", int(mesh.env["GATEWAY_PORT"])))
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    assert b"200 OK" in idle.recv(4096)
    code, seconds = mesh.stop(signal.SIGTERM)
    assert code == 0 and seconds < 10
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    idle.close()


def test_ctrl_c_stops_too(start_mesh):
    mesh = start_mesh()
    mesh.wait_for("ready:", timeout=30)
    code, seconds = mesh.stop(signal.SIGINT)
    assert code == 0 and seconds < 10
    assert {"service": "mesh", "message": "stopped"}.items() <= mesh.records()[-1].items()


def test_only_runs_a_subset(start_mesh):
    mesh = start_mesh("--only", "accounts,inventory")
    mesh.wait_for("inventory started", timeout=30)
    mesh.wait_for("accounts started", timeout=30)
    assert sorted(mesh.children().values()) == ["accounts", "inventory"]
    assert not any(r["service"] == "gateway" for r in mesh.records())


@pytest.mark.parametrize("args,extra,named", [
    ((), {"GATEWAY_PORT": "eighty"}, "GATEWAY_PORT"),
    ((), {"AMQP_URI": "http://localhost"}, "AMQP_URI"),
    ((), {"DATABASE_URL_INVENTORY": "mysql://x/y"}, "DATABASE_URL_INVENTORY"),
    (("--only", "accounts,billing"), {}, "billing"),
    # several processes cannot share a SQLite file, nor one gateway port
    (("--scale", "orders=2"), {}, "DATABASE_URL_ORDERS"),
    (("--scale", "gateway=2"), {}, "load balancer"),
    (("--scale", "orders=two"), {}, "--scale"),
    ((), {"REPLICAS_INVENTORY": "0"}, "REPLICAS"),
])
def test_bad_settings_stop_start_up_in_one_line(mesh_env, args, extra, named):
    result = subprocess.run([str(BIN / "mesh"), "up", *args], cwd=REPO,
                            env=mesh_env(**extra), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr


def test_services_killed_mid_saga_still_settle_every_order(mesh):
    from nameko.standalone.rpc import ClusterRpcProxy

    admin = mesh.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    product = mesh.http("POST", "/api/v1/products", admin, json={
        "sku": f"kill-{uuid.uuid4().hex[:8]}", "name": "K", "price_cents": 700,
        "stock": 5}).json()
    email = f"kill-{uuid.uuid4().hex[:8]}@example.com"
    mesh.http("POST", "/api/v1/auth/register",
              json={"email": email, "password": "correct horse", "name": "K"})
    customer = mesh.http.token(email, "correct horse")
    cards = ["tok_visa", "tok_visa", "tok_declined", "tok_visa"]
    orders = [mesh.http("POST", "/api/v1/orders", customer, json={
        "items": [{"product_id": product["id"], "quantity": 1}],
        "payment": {"card_token": card}}).json() for card in cards]
    for pid, name in mesh.children().items():
        if name in ("orders", "payments"):
            os.kill(pid, signal.SIGKILL)
    mesh.wait_for("orders exited with code -9", timeout=10)
    deadline = time.monotonic() + 60
    final = {}
    while len(final) < len(orders):
        assert time.monotonic() < deadline, (final, mesh.story())
        for order in orders:
            got = mesh.http("GET", f"/api/v1/orders/{order['id']}", customer)
            if got.status_code == 200 and got.json()["status"] in ("confirmed", "rejected"):
                final[order["id"]] = got.json()
        time.sleep(0.3)
    statuses = [final[o["id"]]["status"] for o in orders]
    # a request redelivered after the kill must not have made a second order
    assert mesh.http("GET", "/api/v1/orders", customer).json()["total"] == len(orders)
    assert statuses == ["confirmed", "confirmed", "rejected", "confirmed"]
    # the rejected order's unit comes back once inventory hears of the rejection
    while (left := mesh.http("GET", f"/api/v1/products/{product['id']}")
           .json()["stock"]) != 2:
        assert time.monotonic() < deadline, (left, mesh.story())
        time.sleep(0.2)
    with ClusterRpcProxy({"AMQP_URI": mesh.env["AMQP_URI"]}, timeout=10) as rpc:
        for order in orders:
            payment = rpc.payments.get_payment(order_id=order["id"])
            expected = "declined" if order is orders[2] else "captured"
            assert payment["status"] == expected
            assert payment["amount_cents"] == 700  # one charge, of the order's total


def test_no_broker_says_how_to_start_one_and_exits(mesh_env):
    from mesh.testing import free_port

    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "mesh"), "up"], cwd=REPO, capture_output=True, text=True, timeout=30,
        env=mesh_env(AMQP_URI=f"pyamqp://guest:secret@127.0.0.1:{free_port()}/"))
    assert result.returncode == 1 and result.stdout == ""
    assert time.monotonic() - started < 15
    assert "no RabbitMQ answers at 127.0.0.1:" in result.stderr
    assert "docker-compose.backing.yml" in result.stderr and "secret" not in result.stderr
