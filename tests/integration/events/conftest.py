"""Event tests get a vhost of their own: durable queues would otherwise carry one
test's undelivered events into the next test's services."""
import pytest

from mesh.testing import temporary_vhost


@pytest.fixture
def mesh_config(mesh_config):
    with temporary_vhost() as uri:
        yield {**mesh_config, "AMQP_URI": uri}
