"""Events every running instance hears, for what an instance keeps in memory.

``@hear_event(contracts.accounts.CONTRACT, "user_disabled")`` marks a method that
gets the checked envelope in every instance of the service (nameko's BROADCAST
handler: a queue of the instance's own, gone with it). There is no inbox, no
retry and no dead-letter queue: such a handler only drops remembered state, which
is idempotent by nature, and needs no database (the gateway has none). A message
that is not the declared event, or a handler that fails, is logged and acked.

An event published while the instance is cut off from the broker never reaches
it: its queue went with its connection. So once the queue is declared and bound
again on reconnecting, the method is called with `None` in place of an event
(once per `@hear_event`), meaning "events may have been missed": drop everything
remembered. Events published from then on reach the new queue.
"""
import logging
import uuid

from kombu import Queue
from marshmallow import ValidationError
from nameko.events import BROADCAST, EventHandler
from nameko.exceptions import ContainerBeingKilled

from contracts.base import EventEnvelope
from mesh.messaging.consumers import StopsWhileAway
from mesh.messaging.handlers import declared_event, load_event

__all__ = ["hear_event", "InstanceEventHandler"]

log = logging.getLogger(__name__)


class _ReadyQueue(Queue):
    """A kombu Queue that calls `on_ready()` each time it has been declared and
    bound, as its consumer does on every (re)connection. kombu's own
    `on_declared` comes before the binding: an event in between would be missed."""

    on_ready = None

    def bind(self, channel):
        bound = super().bind(channel)  # a copy made of `attrs` only
        bound.on_ready = self.on_ready
        return bound

    def declare(self, nowait=False, channel=None):
        name = super().declare(nowait=nowait, channel=channel)
        if self.on_ready is not None:
            self.on_ready()
        return name


class InstanceEventHandler(EventHandler):
    # the mesh's: on a cluster it leaves a node that hangs (mesh.messaging.nodes)
    queue_consumer = StopsWhileAway()

    def __init__(self, contract, event_type, **kwargs):
        super().__init__(contract.service, event_type, handler_type=BROADCAST,
                         reliable_delivery=False, **kwargs)
        self.contract = contract
        self.declared = declared_event(contract, event_type)

    def setup(self):
        super().setup()
        self.envelope_schema = EventEnvelope()
        self.data_schema = self.declared.data()
        self.queue = _ReadyQueue(**self.queue.as_dict())
        self.queue.on_ready = self._ready
        self.declarations = 0

    def connection_lost(self):
        """A queue of a new name for the next connection: the old one, exclusive
        to the lost connection, stays locked while the cluster still counts its
        node in (a node that hangs), and it goes with that connection anyway."""
        name = self.queue.name.rsplit("-", 1)[0] + "-" + uuid.uuid4().hex
        self.queue = _ReadyQueue(**{**self.queue.as_dict(), "name": name})
        self.queue.on_ready = self._ready

    def _ready(self):
        # the first time there is nothing remembered that an event could have changed
        self.declarations += 1
        if self.declarations > 1:
            log.warning("%s.%s reconnected: %s events may have been missed",
                        self.container.service_name, self.method_name, self.event_type)
            # not on the consumer's own thread: a full worker pool would hold it
            self.container.spawn_managed_thread(self._tell_missed)

    def _tell_missed(self):
        try:
            self.container.spawn_worker(self, (None,), {})
        except ContainerBeingKilled:
            pass

    def handle_message(self, body, message):
        try:
            event = load_event(body, self.event_type, self.envelope_schema,
                               self.data_schema)
        except (ValidationError, TypeError) as exc:
            log.warning("%s.%s ignored a message that is not a %s event: %s",
                        self.container.service_name, self.method_name,
                        self.event_type, exc)
            self.queue_consumer.ack_message(message)
            return
        super().handle_message(event, message)


hear_event = InstanceEventHandler.decorator
