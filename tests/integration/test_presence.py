"""The presence watcher (mesh.messaging.guard.watch_presence) against the real RabbitMQ,
on a vhost of the test's own."""
import logging

import eventlet
import pytest
from kombu import Connection

from mesh.messaging import guard as guard_module
from mesh.messaging.guard import Guard, watch_presence
from mesh.messaging.tls import let_go
from mesh.messaging.topology import rpc_queue
from mesh.testing import wait_until


@pytest.fixture
def served(uri):
    """A consumer on the RPC queue of a service named `watched`: one instance."""
    with Connection(uri) as connection:
        channel = connection.channel()
        # not exclusive: the watcher's passive declare of another's exclusive
        # queue is refused (RESOURCE_LOCKED)
        channel.queue_declare(rpc_queue("watched"), auto_delete=True)
        channel.basic_consume(rpc_queue("watched"), callback=lambda message: None)
        yield "watched"


class Recorded(Guard):
    """A guard that remembers whether it was ever said to be without a broker."""

    said_down = False

    @property
    def broker_down(self):
        return self._down

    @broker_down.setter
    def broker_down(self, value):
        self._down = value
        self.said_down = self.said_down or value


@pytest.fixture
def watching(uri, monkeypatch):
    """`(guard, connections the watcher opened)`, its watcher running every 50 ms."""
    opened = []

    def recorded(amqp_uri):
        opened.append(real(amqp_uri))
        return opened[-1]
    real = guard_module._watching
    monkeypatch.setattr(guard_module, "_watching", recorded)
    guard = Recorded("watched", uri)
    watcher = eventlet.spawn(watch_presence, uri, [guard], interval=0.05)
    yield guard, opened
    watcher.kill()
    for connection in opened:
        let_go(connection)


def test_a_lost_connection_is_replaced_at_once_and_the_broker_never_said_down(
        served, watching, caplog):
    guard, opened = watching
    caplog.set_level(logging.WARNING, logger=guard_module.__name__)
    wait_until(lambda: guard.present, 5, "the watcher to see the instance")
    opened[0].connection.sock.close()  # as if its node were lost under it
    wait_until(lambda: len(opened) == 2, 5, "the watcher's second connection")
    eventlet.sleep(0.3)  # a few more looks
    assert guard.present and not guard.said_down
    assert len(opened) == 2  # the new one kept
    assert "unreachable" not in caplog.text
