"""mesh.testing, the pytest plugin every installation registers, changes nothing
in a session that does not ask: importing it patches no module."""
import subprocess
import sys

import yaml

from mesh import testing
from tests.unit.test_deploy import REPO, PlainLoader


def test_importing_the_plugin_patches_nothing():
    check = ("import mesh.testing, eventlet.patcher as p; "
             "print([m for m in ('socket', 'thread', 'os', 'select', 'time') "
             "if p.is_monkey_patched(m)])")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_the_backing_compose_file_serves_where_the_tests_look():
    services = yaml.load((REPO / "docker-compose.backing.yml").read_text(),
                         PlainLoader)["services"]
    published = {port.split(":")[1] for s in services.values() for port in s["ports"]}
    defaults = testing.DEFAULTS
    admin = testing.RabbitAdmin(defaults["MESH_TEST_AMQP_URI"])
    assert {str(admin.port), defaults["MESH_TEST_RABBIT_API"].rsplit(":", 1)[1]} <= published
    postgres = defaults["MESH_TEST_POSTGRES"]
    assert postgres.rsplit(":", 1)[1] in published
    assert defaults["MESH_TEST_REDIS_URL"].split(":")[2].split("/")[0] in published
    password = postgres.split(":")[2].split("@")[0]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    assert services["rabbitmq"]["image"].endswith("-management")  # the vhosts' API
    assert all(port.startswith("127.0.0.1:") for s in services.values()
               for port in s["ports"])


def test_the_contract_stub_checks_arguments_and_answers_against_the_contract():
    import pytest
    from marshmallow import ValidationError

    from contracts.errors import NotFound

    inventory = testing.ContractStub(
        "inventory", get_prices={"prices": {"1": 250}},
        get_product=lambda product_id: NotFound(f"product {product_id} not found"))
    assert inventory.get_prices(product_ids=[1]) == {"prices": {"1": 250}}
    assert inventory.calls == [("get_prices", {"product_ids": [1]})]
    with pytest.raises(ValidationError):
        inventory.get_prices(product_ids="one")  # the service would refuse it too
    with pytest.raises(NotFound):
        inventory.get_product(product_id=9)
    with pytest.raises(AttributeError, match="declares no RPC method"):
        inventory.get_pricez
    broken = testing.ContractStub("inventory", get_prices={"prices": "cheap"})
    with pytest.raises(AssertionError, match="breaks the contract"):
        broken.get_prices(product_ids=[1])


def test_the_recording_outbox_refuses_what_the_contract_does_not_declare():
    import pytest

    outbox = testing.RecordingOutbox("accounts")
    outbox.add(None, "user_registered", {"user_id": 1, "email": "a@example.com", "name": "A"})
    assert outbox.types() == ["user_registered"]
    with pytest.raises(ValueError, match="declares no event"):
        outbox.add(None, "user_renamed", {"user_id": 1})


def test_mesh_new_refuses_names_that_would_break_the_repository(tmp_path):
    import pytest

    from mesh.ops.scaffold import ScaffoldError, new_service

    for name in ("lambda", "mesh", "Shipments", "x"):
        with pytest.raises(ScaffoldError):
            new_service(tmp_path, name)


def test_a_gateway_client_keeps_its_connection_unless_told_not_to():
    import eventlet
    import eventlet.wsgi

    from mesh.testing import GatewayClient

    listener = eventlet.listen(("127.0.0.1", 0))

    def app(environ, start_response):  # answers with the client's own port
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["REMOTE_PORT"].encode()]

    server = eventlet.spawn(eventlet.wsgi.server, listener, app, log_output=False)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        for keep_alive, connections in ((True, 1), (False, 3)):
            client = GatewayClient(base, keep_alive=keep_alive)
            ports = {client("GET", "/").text for _ in range(3)}
            assert len(ports) == connections, keep_alive
            client.http.close()
    finally:
        server.kill()
        listener.close()
