"""Publishing to RabbitMQ: one way for the platform's RPC requests and replies,
and confirmed batches for the outbox.

nameko's `Publisher` builds a kombu `Connection` on every publish just to find
its producer pool, and waits for a publisher confirm after every message. Here
the pools are found once per broker and confirms mode, a message that needs no
confirm is one write on a connection kept for the process, and a batch of
messages waits for its confirms once.
"""
import contextlib
import functools
import logging
import time

import amqp
import eventlet
from eventlet.semaphore import Semaphore
from kombu.exceptions import ChannelError
from kombu.pools import producers
from nameko.amqp.publish import UndeliverableMessage
from nameko.constants import DEFAULT_RETRY_POLICY, DEFAULT_TRANSPORT_OPTIONS, PERSISTENT

from mesh.core import codec
from mesh.messaging import nodes
from mesh.messaging.health import queue_state
from mesh.messaging.tls import broker_connection, let_go

__all__ = ["publish", "pooled_producer", "ConfirmedPublisher", "Unconfirmed"]

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 10.0
# how long one message waits for its confirm while the cluster settles, before
# it is sent again (a confirm takes milliseconds from a node that answers)
SETTLING_CONFIRM_SECONDS = 2.0


class Unconfirmed(Exception):
    """The broker did not confirm every message of a batch (nack, or no answer)."""


@functools.cache
def _producers(amqp_uri, confirms):
    # kombu's own global pools, the ones nameko's Publisher uses too
    options = dict(DEFAULT_TRANSPORT_OPTIONS, confirm_publish=confirms)
    return producers[broker_connection(amqp_uri, transport_options=options)]


@contextlib.contextmanager
def pooled_producer(amqp_uri, confirms=True):
    """A kombu producer from the process's pool for `amqp_uri` (and confirms mode)."""
    with _producers(amqp_uri, confirms).acquire(block=True) as producer:
        try:
            yield producer
        except Exception as exc:
            # the broker refused it (kombu, having reconnected and tried again,
            # raises its own error with the nack as the cause): this channel may
            # have been opened while the cluster settled after a lost node (see
            # nodes.settling), and would be refused everything for that queue
            if isinstance(exc, amqp.exceptions.MessageNacked) or isinstance(
                    exc.__cause__, amqp.exceptions.MessageNacked):
                producer.connection.collect()  # the next use opens a new one
            raise


def publish(amqp_uri, payload, confirms=True, **options):
    """Publish `payload` (JSON) as nameko would, reconnecting as nameko's policy says.

    With `confirms` the broker has taken the message when this returns, and a
    `mandatory` message no queue takes raises nameko's `UndeliverableMessage`.
    Without, the message has been written to the broker's socket.
    """
    options.setdefault("delivery_mode", PERSISTENT)
    options.setdefault("serializer", "json")
    if not confirms and options["serializer"] == "json" and not options.get("mandatory"):
        _unconfirmed(amqp_uri).publish(payload, **options)
        return
    with pooled_producer(amqp_uri, confirms) as producer:
        try:
            # a node that hangs never confirms: give up, and retry, elsewhere
            producer.publish(payload, retry=True, retry_policy=DEFAULT_RETRY_POLICY,
                             confirm_timeout=CONFIRM_TIMEOUT, **options)
        except ChannelError as exc:
            if "NO_ROUTE" in str(exc):
                raise UndeliverableMessage() from None
            raise


class _OwnChannel:
    """A connection and channel of a publisher's own, opened on first use and
    dropped after a failure (the next use opens new ones); exchanges are declared
    once on each new channel."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.connection = self.channel = None
        self.declared = set()
        nodes.on_lost(self)

    def node_lost(self, where):
        """Another connection of this process lost the node this one is on: a
        write here would go nowhere, unnoticed, so it is dropped now (waking a
        greenthread waiting on it with an error) and the next use reconnects."""
        if self.connection is not None and nodes.address(self.connection) == where:
            self.drop()

    def _open(self, declare=()):
        if self.channel is None:
            self.connection = broker_connection(self.amqp_uri, connect_timeout=5)
            self.channel = self.connection.channel()
            # py-amqp reads the socket before every publish (a syscall and a
            # timeout) to hear whether the broker blocked the connection; a
            # blocked broker shows here as writes that wait, and callers time out
            self.connection.connection.client_properties.setdefault(
                "capabilities", {})["connection.blocked"] = False
            self.declared = set()
            self.opened(self.channel)
        for exchange in declare:
            if exchange.name not in self.declared:
                exchange.bind(self.channel).declare()
                self.declared.add(exchange.name)
        return self.channel

    def opened(self, channel):
        """What a new channel needs before its first message."""

    def drop(self):
        """Let the connection go without a word to the broker, which may not answer."""
        if self.connection is not None:
            let_go(self.connection)
        self.connection = self.channel = None

    def close(self):
        """Close the connection politely (a stopping process), if the broker answers."""
        if self.connection is not None:
            with eventlet.Timeout(2, False):
                try:
                    self.connection.release()
                except Exception:  # closing what already failed
                    pass
        self.drop()


@functools.cache
def _unconfirmed(amqp_uri):
    return UnconfirmedPublisher(amqp_uri)


class UnconfirmedPublisher(_OwnChannel):
    """One connection per process and broker for messages that need no confirm:
    each is a single write, made under a green lock (two greenthreads writing at
    once could interleave their frames). A failed write reconnects and tries once
    more.

    While the cluster settles after a lost node (`nodes.settling`), a channel may
    be refused every message for a queue whose leader was lost, and without a
    confirm nobody would know: each message is then confirmed instead, and sent
    again on a new connection until the broker takes it. The connection of its
    own is closed then, and opened again only once the cluster has settled."""

    PROPERTIES = ("correlation_id", "reply_to", "message_id", "priority", "expiration")

    def __init__(self, amqp_uri):
        super().__init__(amqp_uri)
        self.lock = Semaphore(1)
        self.confirmed = ConfirmedPublisher(amqp_uri)

    def publish(self, payload, exchange, routing_key, headers=None, delivery_mode=PERSISTENT,
                serializer="json", expiration=None, **properties):
        if expiration is not None:  # seconds, as kombu takes it; AMQP wants ms
            properties["expiration"] = str(int(expiration * 1000))
        body = codec.dumps(payload)
        properties = {"content_type": "application/json", "content_encoding": "utf-8",
                      "delivery_mode": delivery_mode, "application_headers": headers or {},
                      **{k: v for k, v in properties.items()
                         if k in self.PROPERTIES and v is not None}}
        declare = [exchange] if hasattr(exchange, "declare") else []
        if nodes.settling():
            self._confirmed(body, declare, getattr(exchange, "name", exchange), routing_key,
                            properties)
            return
        message = amqp.Message(body, **properties)
        with self.lock:
            for attempt in (1, 2):
                try:
                    self._open(declare).basic_publish(
                        message, exchange=getattr(exchange, "name", exchange),
                        routing_key=routing_key)
                    return
                except (OSError, amqp.exceptions.AMQPError) as exc:
                    self.drop()
                    if attempt == 2:
                        raise
                    log.info("broker connection lost (%s); reconnecting", exc)

    def _confirmed(self, body, declare, exchange, routing_key, properties):
        """Publish once the broker confirms it, trying again on a new connection
        after a refusal, for up to CONFIRM_TIMEOUT (a caller waiting for an answer
        gives up at its own timeout first). One message at a time holds the lock
        (a confirm channel serves one greenthread), each for at most
        SETTLING_CONFIRM_SECONDS: a message that waits on a lost node does not
        hold up the process's others for long."""
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while True:
            with self.lock:
                self.close()  # it may have been opened before the cluster settled
                try:
                    self.confirmed._open(declare)
                    # a message no queue took is dropped, as without a confirm
                    self.confirmed.publish_batch(
                        [(body, exchange, routing_key, properties)],
                        timeout=max(min(SETTLING_CONFIRM_SECONDS,
                                        deadline - time.monotonic()), 0.1))
                    return
                except (Unconfirmed, OSError, amqp.exceptions.AMQPError) as exc:
                    self.confirmed.drop()  # publish_batch did; _open may not have
                    if time.monotonic() >= deadline:
                        raise
                    log.info("the broker did not take a message to %s (%s); sending it "
                             "again on a new connection", routing_key or exchange, exc)
            eventlet.sleep(0.1)


@contextlib.contextmanager
def _one_write(transport):
    """Gather what `transport` is given to send, and send it in one write at the end.

    A socket write costs more than building a message here (a system call, ~0.1 ms
    on this kind of machine), and py-amqp makes one per message. Only for a
    connection no other greenthread writes to meanwhile.
    """
    parts, send = [], transport._write  # the socket's own sendall
    transport._write = lambda data: parts.append(bytes(data))  # py-amqp reuses its buffer
    try:
        yield
    finally:
        transport._write = send
    if parts:
        transport.write(b"".join(parts))


class ConfirmedPublisher(_OwnChannel):
    """A channel of its own in confirm mode: `publish_batch` sends every message of
    a batch as mandatory, then waits once until the broker has confirmed them all,
    and returns the message ids of those no queue took (the broker returns such a
    message before confirming it).

    For one greenthread (the outbox relay). After any failure the connection is
    dropped and the next batch opens a new one; a batch that raised may have been
    delivered in part, which is why every event carries an id that handlers dedupe.
    """

    def __init__(self, amqp_uri, declare=()):
        super().__init__(amqp_uri)
        self.declare = list(declare)

    def opened(self, channel):
        channel.confirm_select()
        self.tag, self.pending, self.refused = 0, set(), 0
        self.queues = set()  # the subscribers' queues found on this connection
        self.returned = []
        channel.events["basic_ack"].add(self._acked)
        channel.events["basic_nack"].add(self._nacked)
        channel.events["basic_return"].add(self._returned)

    def _acked(self, tag, multiple):
        # one confirm may cover every earlier message (multiple), and need not
        # come in the order they were sent
        done = {t for t in self.pending if t <= tag} if multiple else {tag}
        self.pending -= done
        return len(done)

    def _nacked(self, tag, multiple):
        self.refused += self._acked(tag, multiple)

    def _returned(self, exc, exchange, routing_key, message):
        self.returned.append(message.properties.get("message_id"))

    def absent_queues(self, queues, declare):
        """The names of those of `queues` (kombu Queues, each bound to an
        exchange) that do not exist. With `declare`, each is declared and bound
        instead, so none is absent; without (a broker identity may not declare
        another service's queue), each is looked up. Each on a channel of its
        own, which a refusal closes, not the publisher's. Done once per
        connection: a queue found stays found until the connection is lost."""
        absent = set()
        try:
            for queue in queues:
                self._open(self.declare)  # a new connection forgets what was found
                if queue.name in self.queues:
                    continue
                if not declare:
                    if queue_state(self.connection, queue.name) is None:
                        absent.add(queue.name)
                        continue
                else:
                    with self.connection.channel() as channel:
                        try:
                            queue.bind(channel).declare()
                        except amqp.exceptions.PreconditionFailed as exc:
                            # there, with other arguments (QUEUE_TYPE changed, say):
                            # it takes the event; its handler refuses to start and
                            # says what to do, and this one's other events go on
                            log.warning("%s is there with other arguments than its "
                                        "handler's (%s)", queue.name, exc)
                self.queues.add(queue.name)
        except Exception:
            self.drop()
            raise
        return absent

    def publish_batch(self, messages, timeout=CONFIRM_TIMEOUT):
        """`messages`: `(body bytes, exchange, routing key, properties)` each; returns
        the `message_id`s of those no queue took."""
        try:
            channel = self._open(self.declare)
            self.returned = []
            with _one_write(self.connection.connection.transport):
                for body, exchange, routing_key, properties in messages:
                    channel.basic_publish(
                        amqp.Message(body, **{"content_type": "application/json",
                                              "content_encoding": "utf-8",
                                              "delivery_mode": PERSISTENT, **properties}),
                        exchange=exchange, routing_key=routing_key, mandatory=True)
                    self.tag += 1  # delivery tags count the channel's messages from 1
                    self.pending.add(self.tag)
            deadline = time.monotonic() + timeout
            while self.pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unconfirmed(f"{len(self.pending)} message(s) not confirmed "
                                      f"within {timeout:g} s")
                self.connection.drain_events(timeout=remaining)
            if self.refused:
                raise Unconfirmed(f"the broker refused {self.refused} message(s)")
            return set(self.returned)
        except Exception:
            self.drop()
            raise
