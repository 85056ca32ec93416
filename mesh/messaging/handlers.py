"""Idempotent event handlers with retries through delay queues and a dead-letter queue.

``@handle_event(contracts.orders.CONTRACT, "order_created")`` marks a method that
gets the checked envelope. It writes through the service's `Database` session and
does not commit. The worker's transaction begins by recording `(handler,
event_id)` in the `inbox` table; the entrypoint commits that row with the
handler's writes. An event already recorded is acknowledged without running its
handler (on PostgreSQL a concurrent second delivery waits for the first to
commit, then finds it), so an event delivered twice changes nothing the second
time. A handler that raises is retried after each of EVENT_RETRY_DELAYS seconds
(a queue per delay, whose messages expire back into the handler's queue), then
parked in `<queue>.dlq` with its error (queue names: mesh.messaging.topology);
both through the service's own exchange, never the default one. A
malformed message (undecodable, or not matching the contract) goes straight to the
DLQ; neither stops the service.
"""
import datetime as dt
import functools
import logging

import eventlet
from amqp.exceptions import AMQPNotImplementedError, MessageNacked, PreconditionFailed
from kombu import Queue, binding
from kombu.exceptions import OperationalError
from marshmallow import ValidationError
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.events import BROADCAST, EventHandler
from nameko.exceptions import ConfigurationError, ContainerBeingKilled
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from contracts.base import EventEnvelope
from mesh.core.config import setting
from mesh.core.metrics import Metrics
from mesh.data.db import end_work_of, service_database, utcnow
from mesh.data.precompiled import precompiled
from mesh.data.retention import Pruner
from mesh.data.tables import inbox as INBOX
from mesh.messaging.broker import CONFIRM_TIMEOUT, pooled_producer
from mesh.messaging.causes import cause_of, fingerprint
from mesh.messaging.consumers import DrainingQueueConsumer
from mesh.messaging.health import mismatch, queue_state, refuse_mismatched
from mesh.messaging.tls import broker_connection
from mesh.messaging.topology import (dlq_name, lasting_arguments, lasting_queue,
                                     own_exchange, own_exchange_name, retry_queue_name)

__all__ = ["handle_event", "retry_queue", "dlq", "publish_raw", "declared_event",
           "load_event"]

log = logging.getLogger(__name__)
FULL_DLQ_RETRY_MS = 30_000  # when EVENT_RETRY_DELAYS is empty
ATTEMPT, ERROR, FAILED_AT, ORIGIN = ("x-mesh-attempt", "x-mesh-error", "x-mesh-failed-at",
                                     "x-mesh-queue")
GIVE_BACK_PAUSE = 1.0  # seconds before a message that could not be settled is requeued
MAX_CAUSES = 50  # causes of one handler counted apart in mesh_dead_letters_total


def dlq(queue_name, config, service):
    """The DLQ of `service`'s handler queue `queue_name` (its lasting name), bounded
    to DLQ_MAX_LENGTH messages: when it is full the broker refuses (nacks) one more
    instead of dropping the oldest, and the handler keeps the event (`park`)."""
    return Queue(dlq_name(queue_name), exchange=own_exchange(config, service),
                 routing_key=dlq_name(queue_name), durable=True,
                 queue_arguments={**lasting_arguments(config, limit_deliveries=False),
                                  "x-max-length": setting(config, "DLQ_MAX_LENGTH"),
                                  "x-overflow": "reject-publish"})


def renew_if_empty(amqp_uri, queue):
    """Delete `queue` when it exists, empty, with other arguments (a DLQ made
    before its bound, or with another DLQ_MAX_LENGTH), so that it is declared
    anew. One holding messages, or a quorum queue, is kept: `refuse_mismatched`
    then names it."""
    with broker_connection(amqp_uri) as connection:
        state = queue_state(connection, queue.name)
        if state is None or state[0] or mismatch(connection, queue) is None:
            return
        try:
            with connection.channel() as channel:
                # if_empty: a message parked meanwhile is never deleted with it
                channel.queue_delete(queue.name, if_empty=True)
            log.warning("%s had other arguments and was empty: declared anew", queue.name)
        except (PreconditionFailed, AMQPNotImplementedError):
            # not empty after all, or a quorum queue (which cannot be deleted only
            # if empty): left for refuse_mismatched to name
            pass


def retry_queue(queue_name, delay_ms, config, service, exclusive=False):
    """Holds a message `delay_ms`, then dead-letters it back into `queue_name`.
    An exclusive (broadcast instance's) queue's delay queues are classic and
    deleted by the broker once unused for a minute: they go with the instance."""
    name = retry_queue_name(queue_name, delay_ms)
    back = {"x-dead-letter-exchange": own_exchange_name(service),
            "x-dead-letter-routing-key": queue_name}
    if exclusive:
        arguments = {**back, "x-expires": delay_ms + 60_000}
    else:
        arguments = {**back, **lasting_arguments(config, dead_letter_to=queue_name,
                                                 limit_deliveries=False, service=service)}
    arguments["x-message-ttl"] = delay_ms
    return Queue(name, exchange=own_exchange(config, service), routing_key=name,
                 durable=True, queue_arguments=arguments)


def publish_raw(amqp_uri, message, queue, headers):
    """Send `message`'s exact bytes to `queue` through the exchange it is bound to
    (declaring both), confirmed by the broker."""
    with pooled_producer(amqp_uri) as producer:
        # mandatory: were its queue gone, the broker returns it (an error here, so
        # the event is redelivered) rather than confirming a message it dropped
        producer.publish(message.body, exchange=queue.exchange, routing_key=queue.name,
                         mandatory=True,
                         declare=[queue], headers=headers, delivery_mode=2,
                         content_type=message.content_type,
                         content_encoding=message.content_encoding,
                         message_id=message.properties.get("message_id"),
                         retry=True, retry_policy={"max_retries": 3},
                         confirm_timeout=CONFIRM_TIMEOUT)  # a hung node never confirms


def attempt_of(message):
    """How many times the message has failed before (its ATTEMPT header, 0 when
    absent); None when the header is not a count (a bool, a float, a string)."""
    value = (message.headers or {}).get(ATTEMPT, 0)
    if type(value) is not int or value < 0:
        return None
    return value


def declared_event(contract, event_type):
    """The contract's `Event` of `event_type`; ConfigurationError when undeclared."""
    declared = contract.events.get(event_type)
    if declared is None:
        raise ConfigurationError(f"{contract.service} declares no event {event_type!r}")
    return declared


def load_event(body, event_type, envelope_schema, data_schema):
    """The checked envelope of a message `body`; ValidationError or TypeError when
    it is not an `event_type` event as its contract declares it."""
    if not isinstance(body, dict):
        raise TypeError("the body is not a JSON object")
    event = envelope_schema.load(body)
    if event["type"] != event_type:
        raise ValidationError(f"type {event['type']!r} is not {event_type!r}")
    event["data"] = data_schema.load(event["data"])
    event["event_id"] = str(event["event_id"])
    return event


class EventQueueConsumer(DrainingQueueConsumer):
    """The mesh's draining consumer; an undecodable message goes to its handler."""

    def get_consumers(self, consumer_cls, channel):
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = functools.partial(self._undecodable, provider)
        return consumers

    def _undecodable(self, provider, message, exc):
        self.unsettled.add(message)
        self.container.spawn_managed_thread(
            functools.partial(provider.park_malformed, message, f"undecodable: {exc}"))


class MeshEventHandler(EventHandler):
    ENDS_UNIT_OF_WORK = True  # see mesh.data.db.Database
    queue_consumer = EventQueueConsumer()
    pruner = Pruner()  # inbox rows go after INBOX_RETENTION_SECONDS
    metrics = Metrics()

    def __init__(self, contract, event_type, **kwargs):
        super().__init__(contract.service, event_type, **kwargs)
        self.contract = contract
        self.declared = declared_event(contract, event_type)

    def setup(self):
        super().setup()
        config = self.container.config
        self.amqp_uri = config[AMQP_URI_CONFIG_KEY]
        self.delays_ms = [max(1, int(float(d) * 1000))
                          for d in setting(config, "EVENT_RETRY_DELAYS")]
        self.service = service = self.container.service_name
        self.lasting = lasting_queue(self.source_service, self.event_type, service,
                                     self.method_name, self.handler_type)
        self.handler_name = f"{service}.{self.method_name}"
        # bound to its events and, by name, to where its retry queues send them
        # back (as a list: a kombu Queue with bindings drops its one exchange)
        self.queue.bindings = {
            binding(self.queue.exchange, routing_key=self.queue.routing_key),
            binding(own_exchange(config, service), routing_key=self.queue.name)}
        self.queue.exchange = None
        if not self.queue.exclusive:
            self.queue.queue_arguments = lasting_arguments(
                config, dead_letter_to=dlq_name(self.lasting), service=service)
        if self.handler_type == BROADCAST:
            # each instance handles its own copy of every event, once: its inbox
            # rows are its own (the queue's instance id)
            self.handler_name += self.queue.name[len(self.lasting):]
        # its session records the inbox row and commits it with the handler's writes
        self.database = service_database(self.container, f"@handle_event {self.handler_name}")
        self.record = precompiled(insert(INBOX))  # built once: building costs more than running
        self.envelope_schema = EventEnvelope()
        self.dlq_refused()  # at 0 from the start, so an alert sees its first increase
        self.causes = set()  # the fingerprints counted in mesh_dead_letters_total
        self.data_schema = self.declared.data()
        if not self.queue.exclusive:
            renew_if_empty(self.amqp_uri, dlq(self.lasting, config, service))
            # before anything consumes: a refused declare would loop for ever there
            refuse_mismatched(self.amqp_uri, [self.queue, dlq(self.lasting, config, service)] + [
                retry_queue(self.queue.name, delay_ms, config, service)
                for delay_ms in self.delays_ms])

    def start(self):
        if (self.queue.queue_arguments or {}).get("x-dead-letter-routing-key"):
            # the broker dead-letters a message past the delivery limit only into
            # a queue that exists (until then it keeps it): make the DLQ first
            with broker_connection(self.amqp_uri) as connection:
                dlq(self.lasting, self.container.config, self.service)(
                    connection.channel()).declare()
        super().start()

    def handle_message(self, body, message):
        try:
            event = self.load(body)
        except (ValidationError, TypeError) as exc:
            self.park_malformed(message, f"malformed: {exc}")
            return
        context_data = self.unpack_message_headers(message)
        try:
            self.container.spawn_worker(
                self, (event,), {}, context_data=context_data,
                handle_result=functools.partial(self.finish, message, event))
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    def load(self, body):
        return load_event(body, self.event_type, self.envelope_schema, self.data_schema)

    def begin_work(self, worker_ctx, database):
        """Called by the service's `Database` as the worker starts: record the
        event in the inbox as the transaction's first write. The handler then
        gets `ALREADY_HANDLED` for an event recorded before, or the error that
        kept the inbox from answering (raised in the worker, so the event is
        retried, and the container lives on)."""
        if database is not self.database:
            return
        (event,) = worker_ctx.args
        session = database.dbs[worker_ctx].session
        try:
            session.connection().execute(self.record, {
                "handler": self.handler_name, "event_id": event["event_id"],
                "processed_at": utcnow()})
        except IntegrityError:
            session.rollback()
            worker_ctx.args = (ALREADY_HANDLED,)
        except Exception as exc:
            session.rollback()
            worker_ctx.args = (InboxUnavailable(f"{type(exc).__name__}: {exc}"),)

    def finish(self, message, event, worker_ctx, result, exc_info):
        """Commit the handler's writes with its inbox row, or retry/park the event."""
        exc_info = end_work_of(worker_ctx, exc_info)
        try:
            if exc_info is None:
                self.queue_consumer.ack_message(message)
            else:
                self.retry_or_park(message, exc_info[1])
        except Exception:
            log.exception("%s could not retry or park event %s; it goes back to its queue",
                          self.handler_name, event["event_id"])
            self.give_back(message)
        return result, exc_info

    def give_back(self, message):
        """Requeue a message that could be neither retried nor parked (the broker
        away, say), so it is tried again rather than held unacknowledged, its
        prefetch slot taken, until the channel closes. After a pause: at once, a
        lasting fault would make it go round as fast as the broker can deliver."""
        eventlet.sleep(GIVE_BACK_PAUSE)
        self.queue_consumer.requeue_message(message)

    def retry_or_park(self, message, exc):
        error = f"{type(exc).__name__}: {exc}"[:1000]
        attempt = attempt_of(message)
        if attempt is None:  # whatever its history, it cannot be counted: kept for a person
            header = (message.headers or {}).get(ATTEMPT)
            self.park(message, f"{ATTEMPT} header {header!r} is not a count; {error}"[:1000],
                      len(self.delays_ms))
        elif attempt < len(self.delays_ms):
            delay_ms = self.delays_ms[attempt]
            log.warning("%s failed on attempt %d (%s); retrying in %d ms",
                        self.handler_name, attempt + 1, error, delay_ms)
            headers = dict(message.headers or {}, **{ATTEMPT: attempt + 1, ERROR: error})
            headers.pop("x-death", None)
            publish_raw(self.amqp_uri, message,
                        retry_queue(self.queue.name, delay_ms, self.container.config,
                                    self.service, exclusive=self.queue.exclusive), headers)
            self.queue_consumer.ack_message(message)
        else:
            self.park(message, error, attempt)

    def park_malformed(self, message, error):
        try:
            self.park(message, error[:1000], attempt_of(message) or 0)
        except Exception:
            log.exception("%s could not park a malformed message; it goes back to its "
                          "queue", self.handler_name)
            self.give_back(message)

    def park(self, message, error, attempt):
        headers = dict(message.headers or {}, **{
            ATTEMPT: attempt, ERROR: error, ORIGIN: self.queue.name,
            FAILED_AT: dt.datetime.now(dt.timezone.utc).isoformat()})
        headers.pop("x-death", None)
        try:
            publish_raw(self.amqp_uri, message,
                        dlq(self.lasting, self.container.config, self.service), headers)
        except OperationalError as exc:
            # kombu reports the broker's nack (the DLQ is full) as its own error
            if not isinstance(exc.__cause__, MessageNacked):
                raise
            self.keep_retrying(message, error, attempt, headers)
            return
        log.error("%s parked a message in %s after %d attempt(s): %s", self.handler_name,
                  dlq_name(self.lasting), attempt + 1, error)
        self.queue_consumer.ack_message(message)
        self.dead_letters(error).inc()  # after the ack: counting cannot park it twice

    def dead_letters(self, error):
        # by cause, as `mesh dlq groups` shows them: an alert per new cause; past
        # MAX_CAUSES causes of one handler (messages that differ in more than ids),
        # the rest count as one, so the series stay few
        error_type, _ = cause_of(error)
        cause = fingerprint(self.lasting, error)
        if cause not in self.causes:
            cause = "other" if len(self.causes) >= MAX_CAUSES else cause
            self.causes.add(cause)
        return self.metrics.counter(
            "mesh_dead_letters", "Events parked in a dead-letter queue, by cause (its "
            "fingerprint, as `mesh dlq groups` shows it)",
            ("queue", "error_type", "fingerprint")).labels(
            self.metrics.service, self.lasting, error_type, cause)

    def dlq_refused(self):
        return self.metrics.counter(
            "mesh_dlq_refused", "Messages a full dead-letter queue refused (kept in "
            "their handler's retries)", ("queue",)).labels(self.metrics.service, self.lasting)

    def keep_retrying(self, message, error, attempt, headers):
        """The DLQ is full (DLQ_MAX_LENGTH) and refused the message: rather than
        lose it, send it round the longest retry delay again; each time it fails
        it asks the DLQ once more, and it is handled once the fault is fixed."""
        delay_ms = max(self.delays_ms, default=FULL_DLQ_RETRY_MS)
        log.error("%s could not park a message: %s is full (DLQ_MAX_LENGTH); kept, "
                  "retried every %d ms: %s", self.handler_name, dlq_name(self.lasting),
                  delay_ms, error)
        self.dlq_refused().inc()
        headers = {k: v for k, v in headers.items() if k not in (ORIGIN, FAILED_AT)}
        publish_raw(self.amqp_uri, message,
                    retry_queue(self.queue.name, delay_ms, self.container.config,
                                self.service, exclusive=self.queue.exclusive), headers)
        self.queue_consumer.ack_message(message)


class InboxUnavailable(Exception):
    """The inbox could not be asked whether an event was handled; it is retried."""


ALREADY_HANDLED = object()  # what a handler gets instead of an event it has handled


def handle_event(contract, event_type, **kwargs):
    """Mark a method as the idempotent handler of one contract event (see above)."""
    def register(method):
        @functools.wraps(method)
        def handler(service, event):
            if event is ALREADY_HANDLED:
                return None
            if isinstance(event, InboxUnavailable):
                raise event
            return method(service, event)
        return MeshEventHandler.decorator(contract, event_type, **kwargs)(handler)
    return register
