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

from kombu import Queue, binding
from marshmallow import ValidationError
from nameko.amqp.publish import get_producer
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.events import BROADCAST, EventHandler
from nameko.exceptions import ConfigurationError, ContainerBeingKilled
from nameko.messaging import QueueConsumer
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from contracts.base import EventEnvelope
from mesh.core.config import setting
from mesh.data.db import end_work_of, service_database, utcnow
from mesh.data.tables import inbox as INBOX
from mesh.messaging.health import refuse_mismatched
from mesh.messaging.tls import broker_connection, tls_options
from mesh.messaging.topology import (dlq_name, lasting_arguments, lasting_queue,
                                     own_exchange, own_exchange_name, retry_queue_name)

__all__ = ["handle_event", "retry_queue", "dlq", "publish_raw"]

log = logging.getLogger(__name__)
ATTEMPT, ERROR, FAILED_AT, ORIGIN = ("x-mesh-attempt", "x-mesh-error", "x-mesh-failed-at",
                                     "x-mesh-queue")


def dlq(queue_name, config, service):
    """The DLQ of `service`'s handler queue `queue_name` (its lasting name)."""
    return Queue(dlq_name(queue_name), exchange=own_exchange(config, service),
                 routing_key=dlq_name(queue_name), durable=True,
                 queue_arguments=lasting_arguments(config, limit_deliveries=False))


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
    with get_producer(amqp_uri, confirms=True, ssl=tls_options(amqp_uri)) as producer:
        # mandatory: were its queue gone, the broker returns it (an error here, so
        # the event is redelivered) rather than confirming a message it dropped
        producer.publish(message.body, exchange=queue.exchange, routing_key=queue.name,
                         mandatory=True,
                         declare=[queue], headers=headers, delivery_mode=2,
                         content_type=message.content_type,
                         content_encoding=message.content_encoding,
                         message_id=message.properties.get("message_id"),
                         retry=True, retry_policy={"max_retries": 3})


class EventQueueConsumer(QueueConsumer):
    """nameko's QueueConsumer, but an undecodable message goes to its handler."""

    def get_consumers(self, consumer_cls, channel):
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = functools.partial(self._undecodable, provider)
        return consumers

    def _undecodable(self, provider, message, exc):
        self.container.spawn_managed_thread(
            functools.partial(provider.park_malformed, message, f"undecodable: {exc}"))


class MeshEventHandler(EventHandler):
    ENDS_UNIT_OF_WORK = True  # see mesh.data.db.Database
    queue_consumer = EventQueueConsumer()

    def __init__(self, contract, event_type, **kwargs):
        super().__init__(contract.service, event_type, **kwargs)
        self.contract = contract
        self.declared = contract.events.get(event_type)
        if self.declared is None:
            raise ConfigurationError(f"{contract.service} declares no event {event_type!r}")

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
        self.record = insert(INBOX)  # built once: building costs more than running
        self.envelope_schema = EventEnvelope()
        self.data_schema = self.declared.data()
        if not self.queue.exclusive:
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
        if not isinstance(body, dict):
            raise TypeError("the body is not a JSON object")
        event = self.envelope_schema.load(body)
        if event["type"] != self.event_type:
            raise ValidationError(f"type {event['type']!r} is not {self.event_type!r}")
        event["data"] = self.data_schema.load(event["data"])
        event["event_id"] = str(event["event_id"])
        return event

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
            log.exception("%s could not settle event %s; it will be redelivered",
                          self.handler_name, event["event_id"])
        return result, exc_info

    def retry_or_park(self, message, exc):
        attempt = int((message.headers or {}).get(ATTEMPT, 0))
        error = f"{type(exc).__name__}: {exc}"[:1000]
        if attempt < len(self.delays_ms):
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
            self.park(message, error[:1000], int((message.headers or {}).get(ATTEMPT, 0)))
        except Exception:
            log.exception("%s could not park a malformed message", self.handler_name)

    def park(self, message, error, attempt):
        log.error("%s parked a message in %s after %d attempt(s): %s", self.handler_name,
                  dlq_name(self.lasting), attempt + 1, error)
        headers = dict(message.headers or {}, **{
            ATTEMPT: attempt, ERROR: error, ORIGIN: self.queue.name,
            FAILED_AT: dt.datetime.now(dt.timezone.utc).isoformat()})
        headers.pop("x-death", None)
        publish_raw(self.amqp_uri, message,
                    dlq(self.lasting, self.container.config, self.service), headers)
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
