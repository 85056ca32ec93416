"""Subscribing while the cluster settles after a lost node (mesh.messaging.consumers):
a subscription that waits on the broker is given up after a few seconds, its
connection let go, so that kombu connects and subscribes again."""
import time

import eventlet
import pytest
from kombu import Connection

from mesh.messaging import nodes
from mesh.messaging.consumers import SETTLING_SUBSCRIBE_SECONDS, StopsWhileAway


class Subscription:
    """Stands in for a kombu Consumer whose basic.consume the broker answers only
    after `seconds` (as when it asks a hung node first), on a real connection."""

    def __init__(self, channel, seconds):
        self.channel, self.seconds = channel, seconds

    def __enter__(self):
        eventlet.sleep(self.seconds)
        return self

    def __exit__(self, *exc):
        pass


@pytest.fixture
def channel(mesh_config):
    with Connection(mesh_config["AMQP_URI"]) as connection:
        yield connection.default_channel  # py-amqp's, as a kombu Consumer's is


def test_while_settling_a_slow_subscription_gives_up_and_lets_its_connection_go(
        channel, monkeypatch):
    monkeypatch.setattr(nodes, "_lost_at", {"192.0.2.1:5672": time.monotonic()})
    connection = channel.connection
    started = time.monotonic()
    with pytest.raises(OSError):  # a connection error to kombu, which connects again
        with StopsWhileAway()._consume_from(Subscription(channel, 30)):
            pass
    assert time.monotonic() - started < SETTLING_SUBSCRIBE_SECONDS + 1
    assert connection._transport is None  # let go, without a goodbye


def test_otherwise_a_subscription_takes_the_time_it_takes(channel):
    with StopsWhileAway()._consume_from(Subscription(channel, SETTLING_SUBSCRIBE_SECONDS + 0.5)):
        pass
    assert channel.connection._transport is not None
