"""Publishing to RabbitMQ: one way for the platform's RPC requests and replies,
and confirmed batches for the outbox.

nameko's `Publisher` builds a kombu `Connection` on every publish just to find
its producer pool, and waits for a publisher confirm after every message. Here
the pools are found once per broker and confirms mode, and a batch of messages
waits for its confirms once.
"""
import functools
import time

import amqp
from kombu import Connection
from kombu.exceptions import ChannelError
from kombu.pools import producers
from nameko.amqp.publish import UndeliverableMessage
from nameko.constants import DEFAULT_RETRY_POLICY, DEFAULT_TRANSPORT_OPTIONS, PERSISTENT

__all__ = ["publish", "ConfirmedPublisher", "Unconfirmed"]

CONFIRM_TIMEOUT = 10.0


class Unconfirmed(Exception):
    """The broker did not confirm every message of a batch (nack, or no answer)."""


@functools.cache
def _producers(amqp_uri, confirms):
    # kombu's own global pools, the ones nameko's Publisher uses too
    options = dict(DEFAULT_TRANSPORT_OPTIONS, confirm_publish=confirms)
    return producers[Connection(amqp_uri, transport_options=options)]


def publish(amqp_uri, payload, confirms=True, **options):
    """Publish `payload` (JSON) as nameko would, reconnecting as nameko's policy says.

    With `confirms` the broker has taken the message when this returns, and a
    `mandatory` message no queue takes raises nameko's `UndeliverableMessage`.
    """
    options.setdefault("delivery_mode", PERSISTENT)
    options.setdefault("serializer", "json")
    with _producers(amqp_uri, confirms).acquire(block=True) as producer:
        try:
            producer.publish(payload, retry=True, retry_policy=DEFAULT_RETRY_POLICY,
                             **options)
        except ChannelError as exc:
            if "NO_ROUTE" in str(exc):
                raise UndeliverableMessage() from None
            raise


class ConfirmedPublisher:
    """A channel of its own in confirm mode: `publish_batch` sends every message of
    a batch, then waits once until the broker has confirmed them all.

    For one greenthread (the outbox relay). After any failure the connection is
    dropped and the next batch opens a new one; a batch that raised may have been
    delivered in part, which is why every event carries an id that handlers dedupe.
    """

    def __init__(self, amqp_uri, declare=()):
        self.amqp_uri, self.declare = amqp_uri, list(declare)
        self.connection = self.channel = None

    def _open(self):
        if self.channel is None:
            self.connection = Connection(self.amqp_uri, connect_timeout=5)
            self.channel = self.connection.channel()
            for entity in self.declare:
                entity.bind(self.channel).declare()
            self.channel.confirm_select()
            self.tag, self.pending, self.refused = 0, set(), 0
            self.channel.events["basic_ack"].add(self._acked)
            self.channel.events["basic_nack"].add(self._nacked)
        return self.channel

    def _acked(self, tag, multiple):
        # one confirm may cover every earlier message (multiple), and need not
        # come in the order they were sent
        done = {t for t in self.pending if t <= tag} if multiple else {tag}
        self.pending -= done
        return len(done)

    def _nacked(self, tag, multiple):
        self.refused += self._acked(tag, multiple)

    def publish_batch(self, messages, timeout=CONFIRM_TIMEOUT):
        """`messages`: `(body bytes, exchange, routing key, properties)` each."""
        try:
            channel = self._open()
            for body, exchange, routing_key, properties in messages:
                channel.basic_publish(
                    amqp.Message(body, content_type="application/json",
                                 content_encoding="utf-8", delivery_mode=PERSISTENT,
                                 **properties),
                    exchange=exchange, routing_key=routing_key)
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
        except Exception:
            self.close()
            raise

    def close(self):
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # closing what already failed
                pass
        self.connection = self.channel = None
