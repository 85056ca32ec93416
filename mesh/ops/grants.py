"""What each broker identity may do, derived from the contracts and service classes.

RabbitMQ grants per vhost three regular expressions over resource names
(configure: declare and delete; write: publish to an exchange, bind a queue;
read: consume from a queue, bind from an exchange) and, per topic exchange,
two over routing keys (write: publish; read: bind). A service's own queues are
its RPC queue, its reply queues and its handlers' queues with their retries and
DLQ; it may configure those and nothing else (never an exchange: `mesh broker
setup` declares them all). It may publish on nameko's RPC exchange only the
methods of the contracts it calls (`<target>.<method>`) and, when it serves
RPCs, replies (a caller's reply queue's uuid); on its own `<service>.events`
only its contract's events; and into its own `<service>.queues` (retries and
dead letters). Never the default exchange, which reaches every queue by name.
It may bind only what it consumes: `<service>.*` and its reply uuids on the RPC
exchange, and the events it handles on their source's exchange.
"""
import dataclasses
import re

from nameko.rpc import get_rpc_exchange

from mesh.messaging.broadcasts import InstanceEventHandler
from mesh.messaging.handlers import MeshEventHandler
from mesh.messaging.identities import OPERATOR
from mesh.messaging.rpc import ContractRpc, ServiceRpc
from mesh.messaging.topology import BROADCAST, lasting_queue_of, own_exchange_name, rpc_queue
from mesh.core.services import entrypoints_of, import_service

__all__ = ["Grant", "grants", "service_grant", "operator_grant", "exchanges", "NOTHING"]

NOTHING = "^$"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
REPLY_QUEUE = "rpc.reply-{}-"  # nameko's RPC_REPLY_QUEUE_TEMPLATE, before the uuid


def _one_of(patterns):
    return f"^({'|'.join(patterns)})$" if patterns else NOTHING


@dataclasses.dataclass(frozen=True)
class Grant:
    """One identity's vhost permissions and `{topic exchange: (write, read)}`."""

    configure: str
    write: str
    read: str
    topics: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Shape:
    """What a service class serves, calls, publishes and handles."""

    serves_rpc: bool
    calls: dict        # target service -> its method names
    events: list       # its own contract's event types
    handlers: list     # (attribute, MeshEventHandler)
    listeners: list    # (attribute, InstanceEventHandler): no retries, no DLQ


def _shape(service_cls):
    entrypoints = list(entrypoints_of(service_cls))
    calls = {}
    for attr in dir(service_cls):
        dependency = getattr(service_cls, attr, None)
        if isinstance(dependency, ServiceRpc):
            for name in dependency.contracts:
                calls.setdefault(name, set()).update(dependency.methods[name])
    contract = getattr(service_cls, "contract", None)
    return _Shape(serves_rpc=any(isinstance(e, ContractRpc) for _, e in entrypoints),
                  calls={name: sorted(methods) for name, methods in sorted(calls.items())},
                  events=sorted(contract.events) if contract is not None else [],
                  handlers=[(a, e) for a, e in entrypoints if isinstance(e, MeshEventHandler)],
                  listeners=[(a, e) for a, e in entrypoints
                             if isinstance(e, InstanceEventHandler)])


def service_grant(config, name, service_cls):
    """The grant of the service (or gateway) `name` run from `service_cls`."""
    shape = _shape(service_cls)
    rpc = get_rpc_exchange(config).name
    queues = [re.escape(rpc_queue(name))] if shape.serves_rpc else []
    if shape.calls:
        queues.append(re.escape(REPLY_QUEUE.format(name)) + UUID)
    sources = {}
    for attr, handler in shape.handlers:
        lasting = re.escape(lasting_queue_of(name, attr, handler))
        instance = "(-[0-9a-f]{32})?" if handler.handler_type == BROADCAST else ""
        queues.append(lasting + instance + r"(\.delay\.[0-9]+|\.dlq)?")
        sources.setdefault(f"{handler.source_service}.events", set()).add(handler.event_type)
    for attr, listener in shape.listeners:  # a queue per running instance
        queues.append(re.escape(lasting_queue_of(name, attr, listener)) + "-[0-9a-f]{32}")
        sources.setdefault(f"{listener.source_service}.events", set()).add(
            listener.event_type)
    uses_rpc = [re.escape(rpc)] if shape.serves_rpc or shape.calls else []
    own = [re.escape(own_exchange_name(name))] if shape.handlers else []
    events = [re.escape(f"{name}.events")] if shape.events else []
    topics = {}
    if uses_rpc:
        topics[rpc] = (
            _one_of([re.escape(target) + r"\.(" + "|".join(map(re.escape, methods)) + ")"
                     for target, methods in shape.calls.items()] +
                    ([UUID] if shape.serves_rpc else [])),
            _one_of(([re.escape(f"{name}.*")] if shape.serves_rpc else []) +
                    ([UUID] if shape.calls else [])))
    if events:
        topics[f"{name}.events"] = (_one_of(list(map(re.escape, shape.events))), NOTHING)
    for exchange, types in sorted(sources.items()):
        write = topics.get(exchange, (NOTHING,))[0]  # its own events, handled by itself
        topics[exchange] = (write, _one_of(sorted(map(re.escape, types))))
    return Grant(configure=_one_of(queues),
                 write=_one_of(queues + uses_rpc + events + own),
                 read=_one_of(queues + uses_rpc + sorted(map(re.escape, sources)) + own),
                 topics=topics)


def operator_grant():
    """Operators list, replay and purge any queue, call any RPC, emit any event."""
    return Grant(configure=".*", write=".*", read=".*")


def grants(config):
    """`{identity: Grant}` for every service in SERVICES and the operator."""
    found = {name: service_grant(config, name, import_service(path))
             for name, path in config["SERVICES"].items()}
    found[OPERATOR] = operator_grant()
    return found


def exchanges(config):
    """`{name: type}` of every exchange the services use: `mesh broker setup`
    declares them, since no service may."""
    found = {get_rpc_exchange(config).name: "topic"}
    for name, path in config["SERVICES"].items():
        shape = _shape(import_service(path))
        if shape.events:
            found[f"{name}.events"] = "topic"
        for _, handler in shape.handlers + shape.listeners:
            found[f"{handler.source_service}.events"] = "topic"
        if shape.handlers:
            found[own_exchange_name(name)] = "direct"
    return dict(sorted(found.items()))
