"""The mesh on a RabbitMQ cluster of its own (part of `make test`; alone, with its
figures shown: `make test-cluster`)."""
from tests.e2e.conftest import mesh_env  # noqa: F401  (the same fixture as e2e)
