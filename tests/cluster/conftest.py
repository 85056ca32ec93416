"""`make test-cluster`: the mesh on a RabbitMQ cluster of its own (not in `make test`)."""
from tests.e2e.conftest import mesh_env  # noqa: F401  (the same fixture as e2e)
