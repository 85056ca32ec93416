"""The mesh over TLS to a RabbitMQ node of its own with a TLS listener and
certificates made here by openssl, verification on; and the two mistakes an
operator makes with TLS, each refused at start-up in one line."""
import os
import subprocess
import time

import pytest

from mesh.testing import free_port
from tests.cluster.rabbit_cluster import RabbitCluster, _ctl
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, RunningMesh


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(where):
    """A CA, the broker's certificate it signed (for localhost), and another CA."""
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN=mesh test {ca}",
                 cwd=where)
    with open(os.path.join(where, "san.ext"), "w") as ext:
        ext.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key",
             "-out", "broker.csr", "-subj", "/CN=localhost", cwd=where)
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "broker.pem",
             cwd=where)
    for name in os.listdir(where):  # the node runs as the rabbitmq user
        os.chmod(os.path.join(where, name), 0o644)
    return {name: os.path.join(where, f"{name}.pem") for name in ("ca", "other-ca")}


@pytest.fixture(scope="module")
def tls_node():
    if os.geteuid() != 0:
        pytest.skip("the TLS test starts a RabbitMQ node as the rabbitmq user: run it "
                    "as root (CI does)")
    port = free_port()
    node = RabbitCluster(size=1, prefix="meshtls")
    certificates = make_certificates(node.root)
    node.settings = {
        "listeners.ssl.default": f"127.0.0.1:{port}",
        "ssl_options.cacertfile": certificates["ca"],
        "ssl_options.certfile": os.path.join(node.root, "broker.pem"),
        "ssl_options.keyfile": os.path.join(node.root, "broker.key"),
        "ssl_options.verify": "verify_none",
        "ssl_options.fail_if_no_peer_cert": "false",
    }
    node.start()
    yield node, port, certificates
    node.close()


def settings(node, port, scheme="amqps", ca=None):
    return {"AMQP_URI": f"{scheme}://guest:guest@localhost:{port}/{node.vhost}",
            "AMQP_SSL": f"{{ca_certs: {ca}}}" if ca else "",
            "BROKER_IDENTITIES": "false"}  # the node runs no management API


def test_the_mesh_runs_over_verified_tls(tls_node, mesh_env):
    node, port, certificates = tls_node
    mesh = RunningMesh(mesh_env(**settings(node, port, ca=certificates["ca"])))
    try:
        mesh.wait_for("ready: the gateway is serving on", timeout=90)
        admin = mesh.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        product = mesh.http("POST", "/api/v1/products", admin, json={
            "sku": "TLS-1", "name": "Padlock", "price_cents": 900, "stock": 3}).json()
        order = mesh.http("POST", "/api/v1/orders", admin, json={
            "items": [{"product_id": product["id"], "quantity": 1}],
            "payment": {"card_token": "tok_visa"}}, headers={"Idempotency-Key": "tls-1"})
        assert order.status_code == 202, order.text
        deadline = time.monotonic() + 30
        while mesh.http("GET", f"/api/v1/orders/{order.json()['id']}",
                        admin).json()["status"] != "confirmed":
            assert time.monotonic() < deadline, "the order never settled over TLS"
            time.sleep(0.2)
        encrypted = _ctl(node.nodes[0], "list_connections", "-p", node.vhost,
                         "--no-table-headers", "ssl").split()
        assert encrypted and set(encrypted) == {"true"}, encrypted  # every connection
    finally:
        mesh.kill()


@pytest.mark.parametrize("mistake, command, said", [
    ("the wrong CA", ["up"], "certificate verify failed"),
    ("the wrong CA", ["serve", "orders"], "certificate verify failed"),
    ("plain AMQP to the TLS port", ["up"], "needs an amqps:// AMQP_URI"),
    ("plain AMQP to the TLS port", ["serve", "orders"], "needs an amqps:// AMQP_URI"),
])
def test_a_tls_mistake_is_refused_at_start_in_one_line(tls_node, mesh_env, mistake, command,
                                                       said):
    node, port, certificates = tls_node
    env = mesh_env(**(settings(node, port, ca=certificates["other-ca"])
                      if mistake == "the wrong CA" else settings(node, port, scheme="amqp")))
    mesh = RunningMesh(env, *command[1:], command=command[0])
    try:
        code = mesh.process.wait(timeout=30)  # not a hang
    finally:
        mesh.kill()
    time.sleep(0.2)  # the last line read
    lines = [line for line in mesh.lines if line.strip()]
    assert code != 0
    assert len(lines) == 1 and said in lines[0], mesh.output
    assert "Traceback" not in mesh.output
