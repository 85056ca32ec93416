"""Events every running instance hears, for what an instance keeps in memory.

``@hear_event(contracts.accounts.CONTRACT, "user_disabled")`` marks a method that
gets the checked envelope in every instance of the service (nameko's BROADCAST
handler: a queue of the instance's own, gone with it). There is no inbox, no
retry and no dead-letter queue: such a handler only drops remembered state, which
is idempotent by nature, and needs no database (the gateway has none). A message
that is not the declared event, or a handler that fails, is logged and acked.

An event published while the instance is cut off from the broker never reaches
it: its queue went with its connection. So when the queue is declared again on
reconnecting, the method is called once with `None` in place of an event,
meaning "events may have been missed": drop everything remembered. Events
published from then on reach the new queue.
"""
import logging

from marshmallow import ValidationError
from nameko.events import BROADCAST, EventHandler

from contracts.base import EventEnvelope
from mesh.messaging.handlers import declared_event, load_event

__all__ = ["hear_event", "InstanceEventHandler"]

log = logging.getLogger(__name__)


class InstanceEventHandler(EventHandler):

    def __init__(self, contract, event_type, **kwargs):
        super().__init__(contract.service, event_type, handler_type=BROADCAST,
                         reliable_delivery=False, **kwargs)
        self.contract = contract
        self.declared = declared_event(contract, event_type)

    def setup(self):
        super().setup()
        self.envelope_schema = EventEnvelope()
        self.data_schema = self.declared.data()
        self.queue.on_declared = self._declared
        self.declarations = 0

    def _declared(self, *_):
        # kombu declares the queue on every (re)connection; the first time there
        # is nothing remembered that an event could have changed
        self.declarations += 1
        if self.declarations > 1:
            log.warning("%s.%s reconnected: %s events may have been missed",
                        self.container.service_name, self.method_name, self.event_type)
            self.container.spawn_worker(self, (None,), {})

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
