"""Gathered acknowledgements (mesh.messaging.consumers) against the real RabbitMQ,
on a vhost of the test's own: what the broker takes back when the connection goes
says which messages it counts as acknowledged."""
import eventlet
import pytest
from kombu import Connection, Consumer, Queue
from kombu.exceptions import MessageStateError

from contracts.errors import NotFound
from mesh.messaging.consumers import DrainingQueueConsumer, _Acks
from mesh.messaging.health import queue_state
from mesh.testing import wait_until
from services.inventory.service import InventoryService

QUEUE = "acks-test"


@pytest.fixture
def delivered(uri):
    """`delivered(n)`: n messages published to a queue of the test's own, then
    delivered to a consumer that acknowledges nothing itself (`receive` of them,
    when the queue held others); returns the consumer's `(channel, messages)`,
    the messages in delivery order."""
    connections = []

    def deliver(count, receive=None):
        connection = Connection(uri)
        connections.append(connection)
        channel = connection.channel()
        queue = Queue(QUEUE, durable=True)(channel)
        queue.declare()
        for n in range(count):
            channel.basic_publish(channel.prepare_message(str(n).encode()), routing_key=QUEUE)
        messages = []
        consumer = Consumer(channel, [queue], callbacks=[lambda body, message:
                                                         messages.append(message)])
        consumer.qos(prefetch_count=100)
        consumer.consume()
        while len(messages) < (count if receive is None else receive):
            connection.drain_events(timeout=5)
        return channel, messages

    yield deliver
    for connection in connections:
        connection.release()


def sent_acks(channel, monkeypatch):
    """The `(tag, multiple)` of every basic.ack written on `channel` from now on."""
    sent, ack = [], channel.basic_ack

    def spy(delivery_tag, multiple=False):
        sent.append((delivery_tag, multiple))
        return ack(delivery_tag, multiple=multiple)
    monkeypatch.setattr(channel, "basic_ack", spy)
    return sent


def left_in_queue(uri, channel=None):
    """What the broker puts back in the queue once `channel`'s connection closes:
    every message it had delivered there and not seen acknowledged."""
    if channel is not None:
        channel.connection.close()
    with Connection(uri) as connection:
        connection.connect()
        counts = [queue_state(connection, QUEUE)[0]]
        while len(counts) < 2 or counts[-1] != counts[-2]:  # the requeue is asynchronous
            eventlet.sleep(0.2)
            counts.append(queue_state(connection, QUEUE)[0])
        return counts[-1]


def settled_soon(consumer, *but):
    """Wait until the consumer has settled every message it holds but `but`."""
    wait_until(lambda: consumer.unsettled == set(but), timeout=5,
               what=f"every message settled but {len(but)}")


def consumer_of(messages):
    consumer = DrainingQueueConsumer()
    consumer.unsettled.update(messages)
    return consumer


def test_messages_finished_together_are_acknowledged_in_one_frame(uri, delivered,
                                                                  monkeypatch):
    channel, messages = delivered(20)
    sent = sent_acks(channel, monkeypatch)
    consumer = consumer_of(messages)
    for message in reversed(messages):  # finishing in any order
        consumer.ack_message(message)
    assert sent == []  # nothing written until the turn is over
    settled_soon(consumer)
    assert sent == [(20, True)]
    assert all(message.acknowledged for message in messages)
    assert left_in_queue(uri, channel) == 0


def test_a_finished_message_does_not_wait_for_one_still_being_worked_on(uri, delivered,
                                                                        monkeypatch):
    channel, messages = delivered(6)
    sent = sent_acks(channel, monkeypatch)
    consumer = consumer_of(messages)
    for message in messages[:2] + messages[3:5]:  # the third and sixth still working
        consumer.ack_message(message)
    settled_soon(consumer, messages[2], messages[5])
    assert sorted(sent) == [(2, True), (4, False), (5, False)]
    assert consumer.unsettled == {messages[2], messages[5]}
    # the third finishes: the run now reaches the sixth, which is the top
    consumer.ack_message(messages[5])
    consumer.ack_message(messages[2])
    settled_soon(consumer)
    assert sorted(sent)[3:] == [(6, True)]
    assert left_in_queue(uri, channel) == 0


def test_past_its_limit_a_gap_leaves_each_message_acknowledged_on_its_own(
        uri, delivered, monkeypatch):
    channel, messages = delivered(6)
    sent = sent_acks(channel, monkeypatch)
    monkeypatch.setattr(_Acks, "MAX_ABOVE", 2)
    consumer = consumer_of(messages)
    for message in messages[1:5]:  # the first one hangs
        consumer.ack_message(message)
    settled_soon(consumer, messages[0], messages[5])
    for message in (messages[5], messages[0]):
        consumer.ack_message(message)
    settled_soon(consumer)
    assert sent == [(2, False), (3, False), (4, False), (5, False), (6, False), (1, False)]
    assert left_in_queue(uri, channel) == 0


def test_a_requeued_message_goes_back_and_the_run_passes_it(uri, delivered, monkeypatch):
    channel, messages = delivered(3)
    sent = sent_acks(channel, monkeypatch)
    consumer = consumer_of(messages)
    consumer.requeue_message(messages[1])
    consumer.ack_message(messages[0])
    consumer.ack_message(messages[2])
    settled_soon(consumer)
    assert sent == [(3, True)]
    # the requeued one is the broker's again: delivered to the next consumer
    assert left_in_queue(uri, channel) == 1


def test_a_message_settled_twice_is_refused_as_kombu_refuses_it(delivered):
    channel, messages = delivered(2)
    consumer = consumer_of(messages)
    consumer.ack_message(messages[0])
    # a second basic.ack, or a reject after the ack, would close the channel
    with pytest.raises(MessageStateError):
        consumer.ack_message(messages[0])  # before the first is sent
    with pytest.raises(MessageStateError):
        consumer.requeue_message(messages[0])
    settled_soon(consumer, messages[1])
    with pytest.raises(MessageStateError):
        consumer.ack_message(messages[0])  # after
    assert channel.is_open


def test_a_tag_settled_elsewhere_is_never_passed_by_a_multiple_ack(uri, delivered,
                                                                   monkeypatch):
    channel, messages = delivered(3)
    sent = sent_acks(channel, monkeypatch)
    consumer = consumer_of(messages[1:])
    messages[0].ack()  # not through the consumer: a tag it never saw settled
    consumer.ack_message(messages[1])
    consumer.ack_message(messages[2])
    settled_soon(consumer)
    assert sent == [(1, False), (2, False), (3, False)]  # the direct ack first
    assert channel.is_open
    assert left_in_queue(uri, channel) == 0


def test_an_undecodable_message_is_dropped_and_counts_as_settled(uri, delivered,
                                                                  monkeypatch):
    channel, messages = delivered(2)
    sent = sent_acks(channel, monkeypatch)
    consumer = consumer_of(messages[1:])  # the first never reached a provider
    consumer.on_decode_error(messages[0], ValueError("not JSON"))
    consumer.ack_message(messages[1])
    settled_soon(consumer)
    assert sent == [(2, True)]
    assert left_in_queue(uri, channel) == 0


def test_acknowledgements_for_a_lost_connection_settle_without_an_error(uri, delivered):
    channel, messages = delivered(3)
    consumer = consumer_of(messages)
    for message in messages:
        consumer.ack_message(message)
    channel.connection.sock.close()  # the socket dies before the turn is over
    settled_soon(consumer)  # nothing left to drain: the broker takes them back
    assert left_in_queue(uri) == 3


def test_a_late_ack_from_a_lost_channel_leaves_the_new_channels_count_alone(
        uri, delivered, monkeypatch):
    old, stale = delivered(1)
    old.connection.close()  # lost with a worker still on its message
    new, messages = delivered(3, receive=4)  # it comes again, on a new connection
    sent = sent_acks(new, monkeypatch)
    consumer = consumer_of(stale + messages)
    for message in messages[:2]:
        consumer.ack_message(message)
    settled_soon(consumer, stale[0], *messages[2:])
    consumer.ack_message(stale[0])  # nothing to send: the broker took it back
    for message in messages[2:]:
        consumer.ack_message(message)
    settled_soon(consumer)
    assert sent == [(2, True), (4, True)]
    assert left_in_queue(uri, new) == 0


def test_a_new_channel_counts_its_own_tags(uri, delivered, monkeypatch):
    first, messages = delivered(2)
    consumer = consumer_of(messages)
    for message in messages:
        consumer.ack_message(message)
    settled_soon(consumer)
    first.connection.close()
    second, messages = delivered(2)  # as after a reconnection: tags from 1 again
    sent = sent_acks(second, monkeypatch)
    consumer.unsettled.update(messages)
    for message in messages:
        consumer.ack_message(message)
    settled_soon(consumer)
    assert sent == [(2, True)]
    assert left_in_queue(uri, second) == 0


def test_a_service_drops_an_undecodable_request_and_answers_the_next(
        uri, start_service, rpc_client, caplog):
    start_service(InventoryService)
    with Connection(uri) as connection:
        channel = connection.channel()
        channel.basic_publish(  # kombu cannot decode it: not the JSON it says it is
            channel.prepare_message(b"{not json", content_type="application/json"),
            exchange="nameko-rpc", routing_key="inventory.get_product")
        with pytest.raises(NotFound):  # answered: the container lives on
            rpc_client.inventory.get_product(product_id=10**9)
        assert wait_until(lambda: queue_state(connection, "rpc-inventory") == (0, 1),
                          what="the bad request taken off the queue")
    assert "cannot decode a message from inventory.get_product" in caplog.text


def test_an_unexpected_error_while_acknowledging_leaves_nothing_to_drain(uri, delivered,
                                                                        monkeypatch):
    channel, messages = delivered(2)

    def broken(delivery_tag, multiple=False):
        raise RuntimeError("not a channel's error")
    monkeypatch.setattr(channel, "basic_ack", broken)
    consumer = consumer_of(messages)
    for message in messages:
        consumer.ack_message(message)
    settled_soon(consumer)  # a stop would otherwise wait its whole grace
    assert left_in_queue(uri, channel) == 2  # the broker still has them
