"""The queue consumer of the mesh's RPC and event entrypoints: it drains.

nameko's QueueConsumer leaves its loop, closing its connection, as soon as its
last consumer is cancelled, which is the first thing a stopping container does;
a worker still running then finishes, commits, and finds no connection to
acknowledge its message on. The broker has already given that message to
another instance, which acts on it a second time. This one stays connected after
its consumers are cancelled (so no new message comes) until every message it
handed out has been acknowledged or requeued; the grace of `mesh serve`
(STOP_GRACE_SECONDS) bounds the wait.

On a cluster it connects first to the nodes its process has not lost
(mesh.messaging.nodes), and reports a node it loses, so that the process's
other connections leave it too. While the cluster settles after a loss, a
quorum queue may still name a hung node its leader, and subscribing to it waits
for that node (RabbitMQ asks it first, and waits up to its net_setuptime): the
subscription then gives up after SETTLING_SUBSCRIBE_SECONDS and tries again on
a new connection.

Settling a message never raises either: the connection it came on may be gone,
and then the broker has taken it back already. For the same reason a consumer
that loses its connection while stopping has nothing left to drain: it stops
instead of reconnecting for ever (nameko's would, and its container's stop and
kill would wait for it).
"""
import contextlib
import logging
import socket
import time

import eventlet
from amqp.exceptions import AMQPError
from nameko.messaging import QueueConsumer

from mesh.core.config import without_passwords
from mesh.messaging import nodes
from mesh.messaging.tls import let_go

__all__ = ["DrainingQueueConsumer", "StopsWhileAway"]

log = logging.getLogger(__name__)

SETTLING_SUBSCRIBE_SECONDS = 2.5


class StopsWhileAway(QueueConsumer):
    """A queue consumer that, stopping with its broker away, stops."""

    node = None  # the address of the node it is connected to

    @property
    def amqp_uri(self):
        return nodes.ordered(super().amqp_uri)

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        self.node = nodes.address(connection)
        if nodes.settling():  # a failover's last step, and the one that can take longest
            log.warning("subscribed again on %s, %.1f s after losing a node", self.node,
                        time.monotonic() - nodes.last_lost())
        super().on_consume_ready(connection, channel, consumers, **kwargs)
        self._tell("consume_ready")

    def _tell(self, hook):
        """Call `hook()` on each of its providers that defines it."""
        for provider in self._providers:
            told = getattr(provider, hook, None)
            if told is not None:
                told()

    @contextlib.contextmanager
    def _consume_from(self, *consumers):
        """kombu's, with a time limit while the cluster settles (see above)."""
        with contextlib.ExitStack() as stack:
            limit = (eventlet.Timeout(SETTLING_SUBSCRIBE_SECONDS, _SlowToSubscribe())
                     if nodes.settling() else contextlib.nullcontext())
            try:
                with limit:
                    for consumer in consumers:
                        stack.enter_context(consumer)
            except _SlowToSubscribe:
                # no goodbye: the broker answers nothing on this channel meanwhile
                let_go(consumers[0].channel.connection)
                stack.pop_all()
                raise
            yield consumers

    def consume(self, limit=None, timeout=None, safety_interval=1, **kwargs):
        """kombu's loop (nameko sets no limit or timeout), except for two things.
        Heartbeats are kept every second, busy or not: kombu keeps them only when
        a second passes without a message, so a busy connection that only reads
        (a reply consumer acks nothing) sends the broker nothing, and the broker
        closes it after two heartbeat intervals. And a connection that fails is
        dropped at once: on the way out kombu cancels the consumers and closes
        the channel politely, and a node that hangs answers neither, so the loop
        would wait on it for as long as it hangs."""
        with self.consumer_context(**kwargs) as (connection, channel, consumers):
            try:
                beat_due = 0.0
                while not self.should_stop:
                    self.on_iteration()
                    try:
                        connection.drain_events(timeout=safety_interval)
                    except socket.timeout:
                        pass
                    except OSError:
                        if not self.should_stop:
                            raise
                    if time.monotonic() >= beat_due:
                        connection.heartbeat_check()  # raises after two silent beats
                        beat_due = time.monotonic() + 1.0
                    yield
            except Exception as exc:  # kombu's `run` reconnects after what it knows
                if self.node is not None and not self.should_stop:
                    nodes.lost(self.node, f"{type(exc).__name__}: {exc}")
                    self.connection_lost()
                self.node = None
                let_go(connection)
                raise

    def connection_lost(self):
        """Tell each entrypoint that wants to know (`connection_lost()`): what it
        waited for on the lost connection will not come, or its queue must change.
        `consume_ready()` tells it when its queues are consumed again."""
        self._tell("connection_lost")

    def on_connection_error(self, exc, interval):
        if set(self._providers) <= set(self._pending_remove_providers):
            # stopping: what it handed out went back to the broker with the
            # connection, and its consumers with it
            for provider, removed in self._pending_remove_providers.items():
                self._consumers.pop(provider, None)
                removed.send()
            self._pending_remove_providers = {}
            self.forget_unsettled()
            self.should_stop = True
            raise _StoppedWhileAway() from exc  # out of kombu's reconnecting, to `run`
        # nameko's own message shows the passwords of every node but the first
        log.warning("cannot connect to the broker at %s (%s); retrying in %s s",
                    without_passwords(self.amqp_uri), exc, interval)

    def run(self, *args, **kwargs):
        try:
            super().run(*args, **kwargs)
        except _StoppedWhileAway:
            log.info("%s stopped while its broker was away", self.container.service_name)

    def forget_unsettled(self):
        """What it handed out went back to the broker with its connection."""


class DrainingQueueConsumer(StopsWhileAway):
    """Stays connected, once its consumers are cancelled, until every message it
    handed out is acknowledged or requeued.

    Acknowledgements are gathered: the workers that finish in one turn of the
    hub have their messages acknowledged together just after it (`_Acks`)."""

    def __init__(self):
        super().__init__()
        self.unsettled = set()  # messages handed to a provider, not yet acked or requeued
        self.acks = {}  # channel: its _Acks

    def handle_message(self, provider, body, message):
        self.unsettled.add(message)
        super().handle_message(provider, body, message)

    def ack_message(self, message):
        self._acks(message).add(message)

    def requeue_message(self, message):
        acks = self._acks(message)
        try:
            super().requeue_message(message)
            acks.settled(message.delivery_tag)
        except (OSError, AMQPError) as exc:  # its channel failed: the broker takes it back
            log.warning("could not requeue a message from %s (%s: %s); the broker "
                        "delivers it again", message.delivery_info.get("routing_key"),
                        type(exc).__name__, exc)
        finally:
            self.unsettled.discard(message)

    def on_decode_error(self, message, exc):
        """kombu's: logged and acknowledged (its caller's timeout answers), but
        through `ack_message`, so that its tag counts as settled."""
        log.error("cannot decode a message from %s: %r (type %r, encoding %r); dropped",
                  message.delivery_info.get("routing_key"), exc, message.content_type,
                  message.content_encoding)
        self.ack_message(message)

    def _acks(self, message):
        """The `_Acks` of `message`'s channel; MessageStateError, as kombu's
        Message.ack raises it, for a message settled already (a second
        `basic.ack` or a reject after the ack would close the channel)."""
        channel = message.channel
        acks = self.acks.get(channel)
        if acks is None:
            # a new channel counts its tags from 1; a lost one's are the broker's again
            self.acks = {c: a for c, a in self.acks.items() if c.connection}
            acks = self.acks[channel] = _Acks(channel, self._acked)
        if message.acknowledged or message.delivery_tag in acks.done:
            raise message.MessageStateError(
                f"Message already acknowledged with state: "
                f"{'ACK' if message.delivery_tag in acks.done else message._state}")
        return acks

    def _acked(self, messages, exc):
        if exc is not None:  # its channel failed: the broker takes them back
            log.warning("could not acknowledge %d message(s) from %s (%s: %s); the broker "
                        "delivers them again", len(messages),
                        messages[0].delivery_info.get("routing_key"), type(exc).__name__, exc)
        self.unsettled.difference_update(messages)

    def on_iteration(self):
        self._cancel_consumers_if_requested()
        if not self._consumers and not self.unsettled:
            self.should_stop = True

    def forget_unsettled(self):
        self.unsettled.clear()
        self.acks = {}


class _Acks:
    """The acknowledgements of one channel, sent together once the hub has run
    every greenthread due in its turn.

    A socket write and py-amqp's framing of a `basic.ack` cost about 4% of an RPC
    call in `inventory` (py-spy). Delivery tags count a channel's deliveries
    from 1, so once every tag up to T is settled, one `basic.ack` with `multiple`
    acknowledges them all; a finished message above a tag still being worked on
    is acknowledged on its own, so that no finished message waits for a slow one
    (its prefetch slot would stay taken). A tag settled some other way (a requeue)
    counts as settled; one this consumer never saw keeps the run from passing it,
    and the messages above it are acknowledged on their own, as before. Past
    MAX_ABOVE tags settled above a gap (a worker that hangs) it stops counting
    runs on that channel, and acknowledges each message on its own."""

    MAX_ABOVE = 100_000

    def __init__(self, channel, acked):
        self.channel, self.acked = channel, acked
        self.floor = 0  # every tag up to here is settled
        self.done = {}  # tag: message, finished and not yet acknowledged
        self.above = set()  # tags above the floor settled already
        self.due = False

    def add(self, message):
        self.done[message.delivery_tag] = message
        if not self.due:
            self.due = True
            eventlet.spawn_n(self.send)  # after the workers due in this turn

    def settled(self, tag):
        if self.floor is not None:
            self.above.add(tag)
            if len(self.above) > self.MAX_ABOVE:
                self.floor, self.above = None, set()  # lost count

    def send(self):
        self.due = False
        done, self.done = self.done, {}
        if not done:
            return
        top = None
        if self.floor is None:  # lost count: each on its own
            alone = list(done)
        else:
            tag = self.floor + 1
            while tag in done or tag in self.above:
                if tag in done:
                    top = tag
                self.above.discard(tag)
                tag += 1
            self.floor = tag - 1
            alone = [t for t in done if t > self.floor]
        error = None
        try:
            if self.channel.connection:  # else the broker took them back with it
                if top is not None:
                    self.channel.basic_ack(top, multiple=True)
                for t in alone:
                    self.channel.basic_ack(t)
                    self.settled(t)
                for message in done.values():
                    message._state = "ACK"  # as kombu's Message.ack marks it
        except Exception as exc:  # whatever it was, the broker has them until they are
            error = exc
        self.acked(list(done.values()), error)


class _StoppedWhileAway(Exception):
    """Raised from kombu's reconnect loop to leave it: the consumer is stopping."""


class _SlowToSubscribe(socket.timeout):
    """Subscribing took longer than SETTLING_SUBSCRIBE_SECONDS (a connection error
    to kombu, which connects again)."""

    def __init__(self):
        super().__init__("subscribing waited on a lost node; subscribing again")
