"""The transactional outbox: events are rows written with the change they report.

A service records an event with ``self.outbox.add(session, "order_created", data)``
before it commits; `OutboxRelay` publishes committed rows to the service's nameko
events exchange (`<service>.events`, routing key = event type), a batch at a time,
waits until the broker has confirmed the whole batch, and only then marks its rows
sent. Publishing never happens inside the business transaction, and a broker
outage only delays events: rows wait until it is back.
"""
import datetime as dt
import functools
import logging
import time
import uuid

import eventlet
import orjson
from eventlet.queue import Empty, LightQueue
from marshmallow import ValidationError
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider, SharedExtension
from nameko.standalone.events import get_event_exchange
from sqlalchemy import bindparam, func, insert, select, update

from mesh.core import codec
from mesh.core.metrics import Metrics
from mesh.core.tracing import TRACEPARENT
from mesh.data.budget import RELAY_POOL
from mesh.data.db import after_commit, database_url, make_engine, utcnow
from mesh.data.precompiled import precompiled
from mesh.data.retention import Pruner
from mesh.data.tables import outbox as OUTBOX
from mesh.messaging.broker import ConfirmedPublisher
from mesh.messaging.subscribers import subscriber_queues
from mesh.messaging.topology import declares_exchanges

__all__ = ["Outbox", "OutboxRelay", "make_envelope", "backlog_of",
           "CORRELATION_HEADER"]

log = logging.getLogger(__name__)
CORRELATION_HEADER = "nameko.request_id"  # nameko turns it into context_data["request_id"]
TRACE_HEADER = f"nameko.{TRACEPARENT}"
BATCH = 100
POLL_SECONDS = 2.0
MAX_BACKOFF = 10.0
UNROUTABLE_RETRY = 5.0


@functools.cache
def _data_schema(declared):
    # one instance per event type: marshmallow schemas hold no state between calls
    return declared.data()


def make_envelope(contract, event_type, data, correlation_id=None):
    """`{event_id, type, version, occurred_at, correlation_id, data}`, data checked."""
    declared = contract.events.get(event_type)
    if declared is None:
        raise ValueError(f"{contract.service} declares no event {event_type!r}")
    schema = _data_schema(declared)
    dumped = schema.dump(data)
    errors = schema.validate(dumped)
    if errors:
        raise ValidationError(errors)
    return {"event_id": str(uuid.uuid4()), "type": event_type, "version": declared.version,
            "occurred_at": utcnow(), "correlation_id": correlation_id, "data": dumped}


def backlog_of(engine):
    """`(unsent events, seconds the oldest has waited)`; `(0, 0.0)` when all are sent."""
    with engine.connect() as conn:
        count, first = conn.execute(select(func.count(), func.min(OUTBOX.c.occurred_at))
                                    .where(OUTBOX.c.published_at.is_(None))).one()
    return count, max(0.0, (utcnow() - first).total_seconds()) if first else 0.0


class OutboxWriter:
    """What a worker gets: `add(session, type, data)`; the relay wakes on commit."""

    # built once: building a statement costs more than running it
    record = precompiled(insert(OUTBOX))

    def __init__(self, contract, context_data, wake, written_by=None):
        # context_data is read when an event is added: the worker's trace span
        # is only known after its dependencies were injected
        self.contract = contract
        self.context_data, self.wake, self.written_by = context_data, wake, written_by

    def add(self, session, event_type, data):
        correlation_id = self.context_data.get("request_id")
        envelope = make_envelope(self.contract, event_type, data, correlation_id)
        session.connection().execute(self.record, {
            "event_id": envelope["event_id"], "type": event_type,
            "version": envelope["version"], "occurred_at": envelope["occurred_at"],
            "correlation_id": correlation_id,
            "traceparent": self.context_data.get(TRACEPARENT),
            "written_by": self.written_by,
            "data": codec.dumps_text(envelope["data"])})
        after_commit(session, self.wake)
        return envelope


class OutboxRelay(SharedExtension):
    """Publishes a service's committed outbox rows, oldest first; one per container."""

    metrics = Metrics()

    # built once: building a statement costs more than running it
    _unsent = (select(OUTBOX).where(
        OUTBOX.c.published_at.is_(None),
        OUTBOX.c.id.notin_(bindparam("b_skip", expanding=True)))
        .order_by(OUTBOX.c.id).limit(BATCH))
    unsent = precompiled(_unsent)
    unsent_skip_locked = precompiled(_unsent.with_for_update(skip_locked=True))
    mark_sent = precompiled(
        update(OUTBOX).where(OUTBOX.c.id.in_(bindparam("b_ids", expanding=True))))
    rewrite = precompiled(update(OUTBOX).where(OUTBOX.c.id == bindparam("b_id")))

    def __init__(self):
        super().__init__()
        self._wakeup = LightQueue(maxsize=1)
        self._running = False
        self._thread = None
        self.scrubbed = {}  # event type -> data fields its row drops once published
        self.notices = set()  # event types nobody needs when no queue takes them

    def setup(self):
        config = self.container.config
        self.service = self.container.service_name
        self.url = database_url(config, self.service)
        self.exchange = get_event_exchange(self.container.service_name, config)
        self.publisher = ConfirmedPublisher(config[AMQP_URI_CONFIG_KEY],
                                            declare=[self.exchange])
        self.published = self.metrics.counter(
            "mesh_events_published", "Events the outbox published, by type", ("type",))
        self.unroutable_count = self.metrics.counter(
            "mesh_events_unroutable", "Publishes of an event that no queue took, or held "
            "back because a subscriber's queue is missing (it stays in the outbox)",
            ("type",))
        self.unroutable = {}  # outbox row id -> when to try it again
        self.subscribers = subscriber_queues(config, self.service)
        self.declares = declares_exchanges(config)
        self.metrics.add("outbox backlog", self.sample_backlog)

    def learn(self, contract):
        """What the relay does differently for some of `contract`'s events (see
        `contracts.base.Event`: `scrubbed`, `notice`)."""
        self.scrubbed.update({event.type: set(event.scrubbed)
                              for event in contract.events.values() if event.scrubbed})
        self.notices.update(event.type for event in contract.events.values()
                            if event.notice)

    def start(self):
        # an engine of its own: the last flush runs after the service's Database
        # dependency has stopped and disposed of its engine
        self.engine = make_engine(self.url, pool=RELAY_POOL)
        self._running = True
        self._thread = self.container.spawn_managed_thread(self._run,
                                                           identifier="outbox relay")

    def stop(self):
        # one last flush, so a draining service leaves nothing committed behind
        self._running = False
        self.wake()
        if self._thread is not None:
            with eventlet.Timeout(5, False):
                self._thread.wait()
        self.publisher.close()
        self.engine.dispose()

    def kill(self):
        self._running = False
        if self._thread is not None:
            self._thread.kill()
        self.publisher.close()
        self.engine.dispose()

    def wake(self):
        # one token is enough to make the relay run again; greenthreads cannot
        # interleave between the check and the put
        if self._wakeup.qsize() == 0:
            self._wakeup.put_nowait(True)

    def _run(self):
        backoff = 0.5
        while True:
            try:
                while self.publish_batch() == BATCH:
                    pass
                backoff = 0.5
            except Exception as exc:  # broker or database away: keep rows, try later
                log.warning("outbox of %s not published yet (%s); retrying in %.1f s",
                            self.container.service_name, exc, backoff)
                eventlet.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if not self._running:
                return
            try:
                self._wakeup.get(timeout=POLL_SECONDS)
            except Empty:
                pass

    def publish_batch(self):
        """Publish up to BATCH unsent rows; returns how many were sent."""
        if self.engine.dialect.name == "postgresql":
            # several instances share the table: each takes rows no other holds
            with self.engine.begin() as conn:
                rows = conn.execute(self.unsent_skip_locked, self._skip()).all()
                self._mark(conn, self._publish(rows))
            return len(rows)
        # SQLite: one process per file; never hold its write lock across I/O
        with self.engine.connect() as conn:
            rows = conn.execute(self.unsent, self._skip()).all()
        taken = self._publish(rows)
        with self.engine.begin() as conn:
            self._mark(conn, taken)
        return len(rows)

    def _skip(self):
        """The rows no queue took lately: left alone until their next try."""
        now = time.monotonic()
        self.unroutable = {i: at for i, at in self.unroutable.items() if at > now}
        return {"b_skip": list(self.unroutable)}

    def sample_backlog(self):
        """Unsent rows, and how long the oldest has waited (0 when none)."""
        backlog = self.metrics.gauge("mesh_outbox_backlog", "Outbox events not yet published")
        oldest = self.metrics.gauge("mesh_outbox_oldest_age_seconds",
                                    "Age of the oldest outbox event not yet published")
        count, age = backlog_of(self.engine)
        backlog.add_metric([self.metrics.service], count)
        oldest.add_metric([self.metrics.service], age)
        return [backlog, oldest]

    def _publish(self, rows):
        """Send the rows as one batch; returns once the broker confirmed them all.
        The rows of a type whose subscribers' queues are not all there stay unsent."""
        absent = self._absent_subscribers({row.type for row in rows})
        batch = []
        for row in rows:
            if row.type in absent:
                continue
            body = {"event_id": row.event_id, "type": row.type, "version": row.version,
                    "occurred_at": row.occurred_at.astimezone(dt.timezone.utc)
                    .isoformat().replace("+00:00", "Z"),
                    "correlation_id": row.correlation_id,
                    # the row holds the data as JSON already: spliced in, not parsed
                    "data": orjson.Fragment(row.data)}
            headers = {CORRELATION_HEADER: row.correlation_id,
                       TRACE_HEADER: row.traceparent}
            batch.append((orjson.dumps(body), self.exchange.name, row.type,
                          {"message_id": row.event_id, "application_headers":
                           {k: v for k, v in headers.items() if v}}))
        returned = self.publisher.publish_batch(batch) if batch else set()
        taken = []
        for row in rows:
            if row.type in absent:
                self._unroutable(row, "the queue(s) " + ", ".join(sorted(absent[row.type])) +
                                 " of its subscribers do not exist")
            elif row.event_id in returned and row.type not in self.notices:
                self._unroutable(row, "it reached no queue")
            else:
                taken.append(row)
                self.published.labels(self.service, row.type).inc()
        return taken

    def _absent_subscribers(self, types):
        """`{type: names}` of the subscribers' queues that are not there, of
        those `types` (mesh.messaging.subscribers): declared, and so never
        absent, where this service declares what it uses."""
        absent = {}
        for event_type in types:
            names = self.publisher.absent_queues(self.subscribers.get(event_type, ()),
                                                 declare=self.declares)
            if names:
                absent[event_type] = names
        return absent

    def _unroutable(self, row, why):
        # a subscriber could miss it (no handler ever started on this broker, or
        # its queue was deleted): dropping it could lose a compensation, so it
        # stays unsent, tried again every UNROUTABLE_RETRY seconds
        if row.id not in self.unroutable:
            log.warning("%s event %s (%s) is kept in the outbox and tried again every "
                        "%g s: %s", self.service, row.event_id, row.type,
                        UNROUTABLE_RETRY, why)
        self.unroutable[row.id] = time.monotonic() + UNROUTABLE_RETRY
        self.unroutable_count.labels(self.service, row.type).inc()

    def _mark(self, conn, rows):
        if rows:
            conn.execute(self.mark_sent, {"b_ids": [row.id for row in rows],
                                          "published_at": utcnow()})
        # a sent row is never sent again (the broker and the handlers' inboxes
        # take over), so a secret only its delivery needed is not kept
        scrubbed = [{"b_id": row.id, "data": _without(row.data, self.scrubbed[row.type])}
                    for row in rows if row.type in self.scrubbed]
        if scrubbed:
            conn.execute(self.rewrite, scrubbed)


def _without(data, fields):
    """The JSON text `data` without `fields`."""
    return codec.dumps_text({k: v for k, v in codec.loads(data).items()
                             if k not in fields})


class Outbox(DependencyProvider):
    """``outbox = Outbox(CONTRACT)``: record events in this service's outbox."""

    relay = OutboxRelay()
    pruner = Pruner()  # published rows go after OUTBOX_RETENTION_SECONDS

    def __init__(self, contract):
        self.contract = contract

    def setup(self):
        self.relay.learn(self.contract)

    def get_dependency(self, worker_ctx):
        # the worker's live context (context_data is a copy), so events carry its span
        return OutboxWriter(self.contract, worker_ctx.data, self.relay.wake,
                            worker_ctx.entrypoint.method_name)
