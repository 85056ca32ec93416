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
