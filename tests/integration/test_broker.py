"""Publishing (mesh.messaging.broker) against the real RabbitMQ, on a vhost of the test's own."""
import json
import time

import amqp
import eventlet
import pytest
from kombu import Connection, Exchange, Queue
from nameko.amqp.publish import UndeliverableMessage

from mesh.messaging import nodes
from mesh.messaging.broker import ConfirmedPublisher, _producers, _unconfirmed, publish
from mesh.testing import wait_until

EXCHANGE = Exchange("test.events", type="topic", durable=True)


@pytest.fixture
def queue(uri):
    """A queue bound to EXCHANGE for every routing key; yields a reader of it."""
    with Connection(uri) as connection:
        bound = Queue("broker-test", exchange=EXCHANGE, routing_key="#")
        bound(connection.default_channel).declare()

        def read():
            messages = []
            while (message := connection.default_channel.basic_get("broker-test",
                                                                   no_ack=True)):
                messages.append(message)
            return messages
        yield read


def test_a_batch_returns_once_the_broker_confirmed_all_of_it(uri, queue):
    publisher = ConfirmedPublisher(uri, declare=[EXCHANGE])
    batch = [(json.dumps({"n": n}).encode(), EXCHANGE.name, "thing_happened",
              {"message_id": str(n)}) for n in range(50)]
    publisher.publish_batch(batch)
    assert not publisher.pending and not publisher.refused
    publisher.publish_batch(batch[:3])  # tags keep counting on the same channel
    received = queue()
    assert [json.loads(m.body)["n"] for m in received] == list(range(50)) + [0, 1, 2]
    assert received[0].properties["delivery_mode"] == 2  # persistent
    publisher.close()


def test_a_failed_batch_raises_and_the_next_one_reconnects(uri, queue):
    publisher = ConfirmedPublisher(uri, declare=[EXCHANGE])
    with pytest.raises(Exception):  # no such exchange: the broker closes the channel
        publisher.publish_batch([(b"{}", "no-such-exchange", "x", {})])
    assert publisher.connection is None
    publisher.publish_batch([(b'{"n": 1}', EXCHANGE.name, "x", {})])
    assert [json.loads(m.body) for m in queue()] == [{"n": 1}]
    publisher.close()


def test_unconfirmed_messages_survive_a_lost_connection(uri, queue):
    publish(uri, {"n": 1}, confirms=False, exchange=EXCHANGE, routing_key="x")
    _unconfirmed(uri).connection.connection.sock.close()  # the socket dies under it
    publish(uri, {"n": 2}, confirms=False, exchange=EXCHANGE, routing_key="x")
    received = []

    def both_arrived():  # unconfirmed: the write returns before the broker routes it
        received.extend(json.loads(m.body) for m in queue())
        return len(received) >= 2
    wait_until(both_arrived, timeout=5, what="both messages in the queue")
    assert sorted(received, key=lambda m: m["n"]) == [{"n": 1}, {"n": 2}]


def test_a_confirmed_mandatory_message_nobody_takes_is_undeliverable(uri):
    with pytest.raises(UndeliverableMessage):
        publish(uri, {"n": 1}, exchange=EXCHANGE, routing_key="nobody.listens",
                mandatory=True, declare=[EXCHANGE])


def test_while_the_cluster_settles_a_refused_message_is_sent_again_until_taken(
        uri, monkeypatch):
    """After a lost node a channel may be refused everything for a queue (see
    nodes.settling); here the broker refuses for a reason a test can make: a full
    queue that rejects what does not fit."""
    with Connection(uri) as connection:
        channel = connection.default_channel
        channel.queue_declare("broker-test-full", exclusive=True, arguments={
            "x-max-length": 1, "x-overflow": "reject-publish"})
        channel.basic_publish(amqp.Message(b"{}"), routing_key="broker-test-full")
        publish(uri, {"n": 0}, confirms=False, exchange="", routing_key="nowhere")
        assert _unconfirmed(uri).connection is not None
        monkeypatch.setattr(nodes, "_lost_at", {"192.0.2.1:5672": time.monotonic()})

        sender = eventlet.spawn(publish, uri, {"n": 1}, confirms=False, exchange="",
                                routing_key="broker-test-full")
        eventlet.sleep(0.5)
        assert not sender.dead  # refused, and sent again
        assert _unconfirmed(uri).connection is None  # opened before the loss: closed
        assert channel.basic_get("broker-test-full", no_ack=True).body == b"{}"
        sender.wait()  # there was room: taken
        assert json.loads(channel.basic_get("broker-test-full", no_ack=True).body) == {"n": 1}


def test_a_refused_confirmed_message_raises_and_its_channel_is_not_used_again(uri):
    """A nack may mean the channel itself is refused (opened while the cluster
    settled, see nodes.settling): its connection is dropped and the next publish
    opens another. kombu 5.7's retry drops it already (a nack is one of py-amqp's
    recoverable connection errors); `pooled_producer` makes sure of it whatever
    kombu does."""
    with Connection(uri) as connection:
        connection.default_channel.queue_declare("broker-test-refusing", exclusive=True,
                                                 arguments={"x-max-length": 1,
                                                            "x-overflow": "reject-publish"})
        connection.default_channel.basic_publish(amqp.Message(b"{}"),
                                                 routing_key="broker-test-refusing")
        wait_until(lambda: connection.default_channel.queue_declare(
            "broker-test-refusing", passive=True).message_count == 1, 5, "the queue full")
        publish(uri, {"n": 0}, exchange="", routing_key="nowhere")
        with _producers(uri, True).acquire() as producer:
            refused_on = producer.connection.connection
        with pytest.raises(Exception) as caught:
            publish(uri, {"n": 1}, exchange="", routing_key="broker-test-refusing")
        assert isinstance(caught.value.__cause__, amqp.exceptions.MessageNacked)
        publish(uri, {"n": 2}, exchange="", routing_key="nowhere")
        with _producers(uri, True).acquire() as producer:
            assert producer.connection.connection is not refused_on
