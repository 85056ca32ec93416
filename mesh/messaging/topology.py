"""Every queue and exchange name the mesh uses, derived as nameko derives them.

RPC: nameko's topic exchange (`nameko-rpc`, nameko's `get_rpc_exchange`), and one
durable queue per service, `rpc-<service>`. Events: a service publishes on
`<service>.events` (nameko's `get_event_exchange`; topic, the routing key is the
event type). A handler's queue depends on its type, as in
`nameko.events.EventHandler.setup`:

    service pool (the default)   evt-<source>-<event>--<service>.<method>
    singleton                    evt-<source>-<event>
    broadcast                    evt-<source>-<event>--<service>.<method>-<instance>

A broadcast handler has one queue per running instance, named by an id that
changes with each start. Its retries and dead letters hang off its lasting name,
the same without the instance, so every instance's failures land in one DLQ an
operator can find by name.

A service's retries and dead letters go through an exchange of its own,
`<service>.queues` (direct, the routing key is the queue's name), to which each
of its handler queues, their retry queues and DLQ are bound: not through the
default exchange, which reaches every queue by name, so a service's broker
identity (docs "Broker identities") needs no right to write there. With
BROKER_IDENTITIES on, `mesh broker setup` declares every exchange and services
only bind to them: declaring one, even one that exists, takes the configure
right, which would also let a service delete it.

Queues that outlive their consumers (RPC, service-pool and singleton handlers,
their retries and DLQs) are of QUEUE_TYPE (`lasting_arguments`); an instance's
own queues (broadcast handlers, replies) are exclusive and stay classic.
"""
from kombu import Exchange
from nameko.events import BROADCAST, SINGLETON
from nameko.rpc import get_rpc_exchange

from mesh.core.config import setting

__all__ = ["rpc_queue", "handler_queue", "lasting_queue", "dlq_name",
           "retry_queue_name", "lasting_queue_of", "lasting_arguments", "BROADCAST",
           "SINGLETON", "own_exchange_name", "own_exchange", "rpc_exchange",
           "declares_exchanges"]


def rpc_queue(service):
    return f"rpc-{service}"


def own_exchange_name(service):
    return f"{service}.queues"


def declares_exchanges(config):
    """Whether services declare the exchanges they use (else `mesh broker setup` has)."""
    return not setting(config, "BROKER_IDENTITIES")


def own_exchange(config, service):
    """The exchange through which `service` reaches its own queues by name."""
    return Exchange(own_exchange_name(service), type="direct", durable=True,
                    no_declare=not declares_exchanges(config))


def rpc_exchange(config):
    """nameko's RPC exchange, declared only where services declare exchanges."""
    exchange = get_rpc_exchange(config)
    exchange.no_declare = not declares_exchanges(config)
    return exchange


def lasting_queue(source, event_type, service, method, handler_type):
    """The queue name of a handler that outlives any one instance of it."""
    if handler_type == SINGLETON:
        return f"evt-{source}-{event_type}"
    return f"evt-{source}-{event_type}--{service}.{method}"


def handler_queue(source, event_type, service, method, handler_type, instance=None):
    """The queue a running handler consumes from."""
    name = lasting_queue(source, event_type, service, method, handler_type)
    return f"{name}-{instance}" if handler_type == BROADCAST else name


def lasting_queue_of(service, method, handler):
    """`lasting_queue` of a nameko `EventHandler` declared on `service`'s `method`."""
    return lasting_queue(handler.source_service, handler.event_type, service, method,
                         handler.handler_type)


def dlq_name(queue):
    return f"{queue}.dlq"


def retry_queue_name(queue, delay_ms):
    # `.delay.`, not the `.retry.` of the queues that dead-lettered through the
    # default exchange: those keep their arguments (RabbitMQ cannot change them),
    # so an upgrade declares new ones beside them while the old still deliver
    # what they hold back into the handler's queue (docs "Broker identities")
    return f"{queue}.delay.{delay_ms}"


def lasting_arguments(config, dead_letter_to=None, limit_deliveries=True, service=None):
    """The declare arguments of a queue that outlives its consumers.

    Classic: none (as such queues were always declared, so existing ones still
    match). Quorum: replicated; with `limit_deliveries`, a message delivered
    QUEUE_DELIVERY_LIMIT times without an ack is dead-lettered to the queue
    `dead_letter_to`, at least once (the broker keeps it until that queue has
    it), or dropped when there is none; through `service`'s own exchange.
    """
    if setting(config, "QUEUE_TYPE") != "quorum":
        return {}
    arguments = {"x-queue-type": "quorum"}
    if limit_deliveries:
        arguments["x-delivery-limit"] = setting(config, "QUEUE_DELIVERY_LIMIT")
    if dead_letter_to is not None:
        arguments.update({"x-dead-letter-exchange": own_exchange_name(service),
                          "x-dead-letter-routing-key": dead_letter_to,
                          "x-dead-letter-strategy": "at-least-once",
                          "x-overflow": "reject-publish"})
    return arguments
