import pytest


@pytest.fixture(params=["classic", "quorum"], autouse=True)
def queue_type(request, mesh_config):
    """Every event test runs on both queue types a deployment may choose."""
    mesh_config["QUEUE_TYPE"] = request.param
    return request.param
