"""A process's view of a cluster's nodes: a lost node goes last for every new
connection, and every connection still open to it hears at once."""
import re

import pytest
from kombu import Connection

from mesh.messaging import nodes
from mesh.testing import free_port

CLUSTER = ("amqp://u:p@n1:5672/v;amqp://u:p@n2:5672/v;amqps://u:p@n3/v")


@pytest.fixture(autouse=True)
def forget():
    yield
    nodes._lost_at.clear()


def test_the_given_order_holds_until_a_node_is_lost():
    assert nodes.ordered(CLUSTER) == CLUSTER
    assert nodes.ordered("amqp://u:p@n1/v") == "amqp://u:p@n1/v"


def test_a_lost_node_goes_last_and_the_most_recently_lost_very_last():
    nodes.lost("n1:5672", "reset")
    assert nodes.ordered(CLUSTER).split(";") == [
        "amqp://u:p@n2:5672/v", "amqps://u:p@n3/v", "amqp://u:p@n1:5672/v"]
    nodes.lost("n2:5672", "missed heartbeats")
    assert [nodes.address(entry) for entry in nodes.ordered(CLUSTER).split(";")] == [
        "n3:5671", "n1:5672", "n2:5672"]


def test_an_address_has_its_scheme_s_port_when_none_is_given():
    assert nodes.address("amqp://u:p@n1/v") == "n1:5672"
    assert nodes.address("amqps://u:p@n1/v") == "n1:5671"
    assert nodes.address(Connection("amqp://u:p@n1:5673/v")) == "n1:5673"


def test_every_listener_is_told_and_held_weakly():
    class Listener:
        def __init__(self):
            self.told = []

        def node_lost(self, where):
            self.told.append(where)

    listeners = [Listener(), Listener()]
    for listener in listeners:
        nodes.on_lost(listener)
    nodes.lost("n2:5672", "reset")
    assert [listener.told for listener in listeners] == [["n2:5672"], ["n2:5672"]]
    del listeners[:], listener  # held weakly: a dropped publisher is not kept alive
    assert not [listener for listener in nodes._listeners if isinstance(listener, Listener)]


def test_a_uri_and_the_connection_made_from_it_name_one_node():
    port = free_port()  # nothing listens: kombu fills in what it connects to, then fails
    for uri, node in ((f"amqp://u:p@localhost:{port}/v", f"127.0.0.1:{port}"),
                      ("amqps://u:p@localhost/v", "127.0.0.1:5671")):
        connection = Connection(uri, connect_timeout=1)
        with pytest.raises(OSError):
            connection.connect()
        assert nodes.address(uri) == nodes.address(connection) == node
    assert nodes.address("pyamqp://u:p@broker/v") == "broker:5672"


def test_the_cluster_settles_for_a_while_after_a_loss(monkeypatch):
    assert not nodes.settling()  # nothing lost yet
    nodes.lost("n1:5672", "reset")
    assert nodes.settling()
    later = nodes.time.monotonic() + nodes.SETTLE_SECONDS + 1
    monkeypatch.setattr(nodes.time, "monotonic", lambda: later)
    assert not nodes.settling()


def test_subscribing_again_after_a_lost_node_says_where_and_how_long_after(caplog):
    from mesh.messaging.consumers import StopsWhileAway
    consumer = StopsWhileAway()
    port = free_port()
    connection = Connection(f"amqp://u:p@127.0.0.1:{port}//")  # only its address is read
    consumer.on_consume_ready(connection, None, [])
    assert "subscribed again" not in caplog.text  # a start, not a failover
    nodes.lost("127.0.0.1:5672", "reset")
    consumer.on_consume_ready(connection, None, [])
    assert re.search(rf"subscribed again on 127\.0\.0\.1:{port}, \d+\.\d s after losing a node",
                     caplog.text), caplog.text
