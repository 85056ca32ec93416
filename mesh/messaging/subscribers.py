"""Which queues must take each event: the lasting queues of the mesh's handlers.

The broker returns a `mandatory` message only when it reaches no queue at all,
so a publisher cannot learn that an event reached one of its subscribers and
missed another whose queue did not exist yet (a fresh vhost, lost definitions,
queues deleted and everything started again). The outbox relay therefore makes
sure, before it publishes an event type, that the queue of every handler of it
among the services in SERVICES exists and is bound (`subscriber_queues`), and
keeps the event unsent when one does not.

Only queues that outlive their consumers count: a service-pool or singleton
`@handle_event`. A broadcast or `@hear_event` queue is an instance's own and
goes with it; what such a handler keeps in memory is dropped when it
reconnects (mesh.messaging.broadcasts).
"""
from kombu import Queue
from nameko.events import BROADCAST
from nameko.standalone.events import get_event_exchange

from mesh.core.services import entrypoints_of, import_service
from mesh.messaging.handlers import MeshEventHandler
from mesh.messaging.topology import dlq_name, lasting_arguments, lasting_queue_of

__all__ = ["subscriber_queues"]


def subscriber_queues(config, source):
    """`{event type: [Queue]}`: for each event `source` publishes, the queue of
    every lasting handler of it in SERVICES, declared as its handler declares it
    (arguments and the binding to `<source>.events`), so that declaring it here
    first changes nothing when the handler starts."""
    exchange = get_event_exchange(source, config)
    exchange.no_declare = True  # the relay's publisher declares it, where it may
    found = {}
    for path in (config.get("SERVICES") or {}).values():
        service_cls = import_service(path)
        service = service_cls.name  # what its handlers name their queues by
        for attr, handler in entrypoints_of(service_cls):
            if (not isinstance(handler, MeshEventHandler) or handler.source_service != source
                    or handler.handler_type == BROADCAST or not handler.reliable_delivery):
                continue
            name = lasting_queue_of(service, attr, handler)
            found.setdefault(handler.event_type, []).append(Queue(
                name, exchange=exchange, routing_key=handler.event_type, durable=True,
                queue_arguments=lasting_arguments(config, dead_letter_to=dlq_name(name),
                                                  service=service)))
    return found
