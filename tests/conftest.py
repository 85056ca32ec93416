"""The suite's own setup: eventlet's monkey patch, before anything opens a socket
(nameko's services run on green threads; unpatched, a real socket read hangs in
teardown), and markers that follow the folder."""
from mesh.core.logs import quiet_eventlet_deprecation

quiet_eventlet_deprecation()

import eventlet  # noqa: E402

eventlet.monkey_patch()

import pathlib  # noqa: E402

import pytest  # noqa: E402

LEVELS = ("unit", "integration", "e2e", "cluster")


def pytest_collection_modifyitems(items):
    for item in items:
        parts = pathlib.Path(str(item.fspath)).parts
        for level in LEVELS:
            if level in parts:
                item.add_marker(getattr(pytest.mark, level))


@pytest.fixture(autouse=True)
def no_node_lost_yet():
    """Each test starts as a new process does, having lost no broker node: an
    earlier test's broker outage would leave this one publishing as a process
    does while a cluster settles (mesh.messaging.nodes)."""
    from mesh.messaging import nodes
    nodes._lost_at.clear()
