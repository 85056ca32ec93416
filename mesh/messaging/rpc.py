"""Contract-enforced RPC: `rpc` validates what comes in and goes out; `ServiceRpc` calls.

A service names its contract (`contract = contracts.inventory.CONTRACT`) and
decorates each declared method with `@rpc`. Arguments are bound to the method's
signature and loaded through the contract's schema (bad ones raise
`contracts.errors.InvalidInput` to the caller, without starting a worker); the
result is dumped through the result schema, so callers get plain JSON-able dicts.

Every `ServiceRpc` call is guarded and follows its target's policy (timeout,
retries of idempotent reads, circuit, concurrency: `mesh.messaging.policy`). A
method whose call to another service finds it unavailable or too slow answers its
own caller `Busy` (retryable; the gateway's 503), not an error of its own. A
call made while serving an RPC waits no longer than that RPC's caller still
waits (the request's `EXPIRES`, kept as the worker's DEADLINE).

The wire is nameko's own, so stock clients and `nameko shell` call mesh services
and mesh callers call stock ones. Two things differ, both for speed: requests and
replies are sent without waiting for a publisher confirm (were the broker to lose
one, the caller's timeout answers, exactly as when the service dies before
replying; a service with no instance is refused by the guard first), and they go
through `mesh.messaging.broker`'s long-lived producer pools.
"""
import functools
import inspect
import logging
import time
import uuid

import eventlet
from eventlet.event import Event
from kombu import Queue
from kombu.exceptions import EncodeError
from kombu.serialization import registry
from marshmallow import ValidationError
from nameko.constants import AMQP_URI_CONFIG_KEY, NON_PERSISTENT
from nameko.exceptions import (ConfigurationError, ContainerBeingKilled, MalformedRequest,
                               RpcTimeout, UnknownService, UnserializableValueError,
                               deserialize, serialize)
from nameko.extensions import DependencyProvider
from nameko.messaging import HeaderEncoder
from nameko.rpc import (RPC_REPLY_QUEUE_TEMPLATE, RPC_REPLY_QUEUE_TTL, ReplyListener, Rpc,
                        RpcConsumer, RpcProxy)
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from contracts.base import ContractError
from contracts.errors import Busy, ContractViolation, InvalidInput
from mesh.core.metrics import Metrics
from mesh.data.db import end_work_of, utcnow
from mesh.data.precompiled import precompiled
from mesh.data.retention import Pruner
from mesh.data.tables import rpc_requests
from mesh.messaging.broker import publish
from mesh.messaging.consumers import DrainingQueueConsumer, StopsWhileAway
from mesh.messaging.deadline import NEVER, Deadline
from mesh.messaging.guard import AnswerLost, Guards, ServiceUnavailable
from mesh.messaging.health import refuse_mismatched
from mesh.messaging.policy import DeadlinePassed, GuardedCall, policy_for
from mesh.messaging.topology import lasting_arguments, rpc_exchange

__all__ = ["rpc", "ServiceRpc", "ServiceRpcs", "RequestKey",
           "claim_request", "RpcTimeout"]

log = logging.getLogger(__name__)
REQUEST_KEY = "rpc_request_key"
# when a caller stops waiting (epoch seconds): the service drops the request then
EXPIRES = "x-mesh-expires-at"
# the same instant, kept in the worker's context: no call it makes waits longer
DEADLINE = "mesh_deadline"


class ContractRpcConsumer(RpcConsumer):
    """nameko's RpcConsumer, replying without publisher confirms, on a consumer
    that drains (mesh.messaging.consumers)."""

    queue_consumer = DrainingQueueConsumer()

    def setup(self):
        plain = [e for e in self.container.entrypoints
                 if isinstance(e, Rpc) and not isinstance(e, ContractRpc)]
        if plain:  # two consumers on one queue would take each other's requests
            raise ConfigurationError(
                f"{self.container.service_name} mixes nameko's @rpc "
                f"({plain[0].method_name}) with mesh.messaging.rpc.rpc; use "
                "mesh.messaging.rpc.rpc only")
        super().setup()
        config = self.container.config
        # a poison request is dropped after QUEUE_DELIVERY_LIMIT deliveries: its
        # caller has long since had its timeout
        self.queue.queue_arguments = lasting_arguments(config)
        self.amqp_uri = config[AMQP_URI_CONFIG_KEY]
        self.exchange = self.queue.exchange = rpc_exchange(config)
        # before anything consumes: a refused declare would loop for ever there
        refuse_mismatched(self.amqp_uri, [self.queue])

    def handle_result(self, message, result, exc_info):
        try:
            result, exc_info = self.reply(message, result, exc_info)
        except Exception as exc:
            # An error escaping here would kill the container, and with it every
            # worker of the process mid-transaction. The work is committed; its
            # caller's timeout answers for the lost reply, exactly as when a reply
            # is lost on the way. Acknowledged all the same: delivered again, an
            # unkeyed request would act twice.
            log.error("%s could not reply to %s (%s: %s); its caller's timeout answers",
                      self.container.service_name, message.delivery_info.get("routing_key"),
                      type(exc).__name__, exc)
        self.queue_consumer.ack_message(message)
        return result, exc_info

    def reply(self, message, result, exc_info):
        properties = message.properties
        if not properties.get("reply_to"):
            log.warning("%s: a request to %s names no reply queue; not answered",
                        self.container.service_name, message.delivery_info.get("routing_key"))
            return result, exc_info
        # answer in the request's own encoding, as nameko's Responder does
        # transient: a reply outlives neither its caller's wait nor a broker restart
        options = dict(serializer=registry.type_to_name[properties["content_type"]],
                       exchange=self.exchange, routing_key=properties["reply_to"],
                       correlation_id=properties.get("correlation_id"),
                       delivery_mode=NON_PERSISTENT)
        error = serialize(exc_info[1]) if exc_info is not None else None
        try:
            publish(self.amqp_uri, {"result": result, "error": error}, confirms=False,
                    **options)
        except EncodeError:
            exc_info = (UnserializableValueError, UnserializableValueError(result), None)
            result, error = None, serialize(exc_info[1])
            publish(self.amqp_uri, {"result": None, "error": error}, confirms=False,
                    **options)
        return result, exc_info


class ContractRpc(Rpc):
    """nameko's `@rpc`, checked against the service's contract."""

    ENDS_UNIT_OF_WORK = True  # see mesh.data.db.Database
    rpc_consumer = ContractRpcConsumer()

    def setup(self):
        service_cls = self.container.service_cls
        contract = getattr(service_cls, "contract", None)
        if contract is None or self.method_name not in contract.methods:
            raise ConfigurationError(
                f"{service_cls.__name__}.{self.method_name} is not declared in "
                f"the contract of {self.container.service_name}")
        self.method = contract.methods[self.method_name]
        # a contract's errors are answers, not faults: logged without a traceback
        self.expected_exceptions = (ContractError,)
        self.signature = inspect.signature(getattr(service_cls, self.method_name))
        self.args_schema = self.method.args()
        self.result_schema = self.method.result()
        super().setup()

    def handle_message(self, body, message):
        context_data = self.unpack_message_headers(message)
        deadline = Deadline.of(context_data.pop(EXPIRES, None))
        if deadline.passed():
            # its caller has given up (and may have retried): doing it now could
            # apply it after the caller was told it failed
            log.warning("%s.%s: dropped a request that expired %.1f s ago",
                        self.container.service_name, self.method_name, -deadline.left())
            self.rpc_consumer.queue_consumer.ack_message(message)
            return
        context_data.pop(DEADLINE, None)  # only ever this request's own
        if deadline.at is not None:
            context_data[DEADLINE] = deadline.at
        try:
            args, kwargs = body["args"], body["kwargs"]
        except (KeyError, TypeError):
            raise MalformedRequest("Message missing `args` or `kwargs`") from None
        kwargs = self.load_arguments(args, kwargs)
        # the same for a request the broker delivers again after a crash
        context_data[REQUEST_KEY] = message.properties.get("correlation_id")
        try:
            self.container.spawn_worker(
                self, (), kwargs, context_data=context_data,
                handle_result=functools.partial(self.handle_result, message))
        except ContainerBeingKilled:
            self.rpc_consumer.requeue_message(message)

    def load_arguments(self, args, kwargs):
        """Bind positional and keyword arguments by name and load them."""
        try:
            bound = self.signature.bind_partial(None, *args, **kwargs).arguments
        except TypeError as exc:
            raise InvalidInput(f"{self.method_name}: {exc}") from None
        bound.pop(next(iter(self.signature.parameters)))  # self
        try:
            return self.args_schema.load(bound)
        except ValidationError as exc:
            raise InvalidInput(f"invalid arguments to {self.method_name}",
                               exc.normalized_messages()) from None

    def handle_result(self, message, worker_ctx, result, exc_info):
        if exc_info is not None and isinstance(exc_info[1], DOWNSTREAM_UNWELL):
            log.warning("%s.%s answers Busy: %s", self.container.service_name,
                        self.method_name, exc_info[1])
            exc_info = (Busy, busy_for(exc_info[1]), None)
        if exc_info is None:
            try:
                result = self.result_schema.dump(result)
                errors = self.result_schema.validate(result)
            except Exception as exc:  # a result that cannot even be dumped
                errors = {"_schema": [repr(exc)]}
            if errors:
                log.error("%s.%s broke its contract: %s", self.container.service_name,
                          self.method_name, errors)
                violation = ContractViolation(
                    f"{self.container.service_name}.{self.method_name} returned a "
                    "result its contract does not allow")
                result, exc_info = None, (type(violation), violation, None)
        ended = end_work_of(worker_ctx, exc_info)  # its writes are kept before it answers
        if ended is not exc_info:
            result, exc_info = None, ended
        return super().handle_result(message, worker_ctx, result, exc_info)


rpc = ContractRpc.decorator

# a service this worker called could not answer (never the worker's own fault),
# or did not in the time its own caller waits
DOWNSTREAM_UNWELL = (ServiceUnavailable, RpcTimeout, UnknownService, DeadlinePassed)


def busy_for(exc):
    """The contract's answer when a service this one needs is unavailable: `Busy`,
    which its callers (the gateway: 503 with Retry-After) know to try again."""
    retry_after = getattr(exc, "retry_after", Busy.retry_after)
    return Busy(f"{exc}; try again shortly", {"retry_after": retry_after})


CLAIM = precompiled(insert(rpc_requests))  # built once: building costs more than running it


def claim_request(session, key):
    """Record `key` as the first write of a transaction.

    False, with the session rolled back, when an earlier delivery of the same
    request already committed its effect. (First, because the rollback would
    undo anything written before it.)
    """
    if key is None:
        return True
    try:
        session.connection().execute(CLAIM, {
            "key": key, "applied_at": utcnow(), "request_id": getattr(key, "request_id", None),
            "method": getattr(key, "method", None)})
    except IntegrityError:
        session.rollback()
        return False
    return True


class RequestKey(DependencyProvider):
    """The id of the RPC request being served, stable across redeliveries.

    A request is acknowledged only after its reply is sent, so a service that
    dies in between gets it again after a restart. A method that creates
    something keys the creation by this id, so the second delivery finds the
    first one's result instead of making another.
    """

    pruner = Pruner()  # request keys go after REQUEST_KEY_RETENTION_SECONDS

    def get_dependency(self, worker_ctx):
        # `data`, not `context_data`: that copy builds the call-id stack (a uuid)
        # for every worker, about 3% of a read's CPU (py-spy)
        key = worker_ctx.data.get(REQUEST_KEY)
        if key is None:
            return None
        return AppliedKey(key, worker_ctx.data.get("request_id"),
                          worker_ctx.entrypoint.method_name)


class AppliedKey(str):
    """A request key, which is all a service compares or stores; it also says which
    request and method it came from, for the row `claim_request` writes (`mesh trace`)."""

    def __new__(cls, key, request_id, method):
        applied = super().__new__(cls, key)
        applied.request_id, applied.method = request_id, method
        return applied

    def __getnewargs__(self):  # copied or pickled as itself
        return str(self), self.request_id, self.method


class ContractServiceProxy(HeaderEncoder):
    """Calls only what the target's contract declares and the caller said it calls
    (`methods`), through its `GuardedCall`."""

    def __init__(self, worker_ctx, contract, methods, reply_listener, guarded, exchange):
        self.worker_ctx, self.contract, self.methods = worker_ctx, contract, methods
        self.reply_listener, self.guarded, self.exchange = reply_listener, guarded, exchange
        self.timeout = guarded.policy.timeout

    def get_message_headers(self, worker_ctx):
        headers = super().get_message_headers(worker_ctx)
        headers.pop(self._get_header_name(DEADLINE), None)  # each call sends its own
        return headers

    @property
    def deadline(self):
        """When the worker's own caller stops waiting (a `Deadline`): no call it
        makes waits longer. Only an RPC has one (an event or an HTTP request has
        no caller waiting on this service: NEVER)."""
        if isinstance(self.worker_ctx.entrypoint, ContractRpc):
            return Deadline.of(self.worker_ctx.data.get(DEADLINE))
        return NEVER

    def __getattr__(self, name):
        method = self.contract.method(name)  # AttributeError
        if name not in self.methods:
            raise AttributeError(f"{self.contract.service}.{name} is not among the calls "
                                 f"this service declared (its ServiceRpc's methods)")
        return ContractCall(self, name, method)


class ContractCall:
    """One call of a contract's method: ``proxy.get_product(product_id=1)``."""

    def __init__(self, proxy, name, method):
        self.proxy, self.name, self.method = proxy, name, method
        self.service = proxy.contract.service

    def __repr__(self):
        return f"<proxy method: {self.service}.{self.name}>"

    def __call__(self, **kwargs):
        unknown = set(kwargs) - set(self.method.args._declared_fields)
        if unknown:
            raise TypeError(f"{self!r} takes no argument(s) {sorted(unknown)}")
        deadline = self.proxy.deadline
        return self.proxy.guarded(self.method, self.name,
                                  lambda: self._call(kwargs, deadline), deadline)

    def _call(self, kwargs, deadline):
        """nameko's MethodProxy call, on mesh.messaging.broker's producers; the timeout is
        counted from the call, so sending the request is inside it too. It is the
        target's, or the time left before `deadline` when that is shorter."""
        proxy = self.proxy
        container = proxy.worker_ctx.container
        timeout, why = deadline.cap(proxy.timeout)
        started = time.monotonic()
        listener = proxy.reply_listener
        if not listener.ready.ready():
            # after a lost connection, until the new reply queue is there (a reply
            # sent before would be dropped); not the service's fault if it is not
            with eventlet.Timeout(timeout, AnswerLost(
                    f"no reply queue to hear {self.service}.{self.name} on within "
                    f"{timeout:.3g} s")):
                listener.ready.wait()
        correlation_id = str(uuid.uuid4())
        # registered only now: a lost connection fails every call waiting then
        reply = listener.get_reply_event(correlation_id)
        remaining = max(timeout - (time.monotonic() - started), 0.001)
        try:
            with eventlet.Timeout(remaining, RpcTimeout(
                    f"{self.service}.{self.name} did not answer within "
                    f"{timeout:.3g} s{why}")):
                # Sent without a publisher confirm: the guard has already refused a
                # service with no running instance, and a request lost on the way
                # is answered by the timeout.
                # The request expires with its timeout: in the queue (the broker
                # drops it) and at the service (which drops it unstarted).
                headers = proxy.get_message_headers(proxy.worker_ctx)
                headers[EXPIRES] = time.time() + remaining
                publish(container.config[AMQP_URI_CONFIG_KEY],
                        {"args": (), "kwargs": kwargs}, confirms=False,
                        exchange=proxy.exchange, routing_key=f"{self.service}.{self.name}",
                        reply_to=listener.routing_key,
                        correlation_id=correlation_id, expiration=remaining,
                        headers=headers)
                body = reply.wait()
        finally:
            # nameko keeps the event of a call that never got its answer
            listener._reply_events.pop(correlation_id, None)
        if body.get("error"):
            raise deserialize(body["error"])
        return body["result"]


class ReplyConsumer(StopsWhileAway):
    """A consumer for reply queues, without acknowledgements (so nothing to
    drain): a reply is read once, by the caller waiting for it, and acking it
    cost a write per call."""

    def get_consumers(self, consumer_cls, channel):
        return super().get_consumers(functools.partial(consumer_cls, no_ack=True), channel)


class ContractReplyListener(ReplyListener):
    """nameko's, with a reply queue of its own per connection: after its node is
    lost, the old queue's name may still be held by a node that hangs, and
    declaring it again would wait on that node; and the calls waiting for an
    answer on the lost connection fail at once."""

    queue_consumer = ReplyConsumer()

    def renew(self):
        """A new reply queue (and routing key), for calls made from now on; `ready`
        once it is declared and consumed (a reply sent before would be dropped)."""
        self.ready = Event()
        self.routing_key = str(uuid.uuid4())
        # transient (nameko's is durable): a cluster forgets it with its node;
        # a reply never outlives a broker restart anyway
        self.queue = Queue(RPC_REPLY_QUEUE_TEMPLATE.format(self.container.service_name,
                                                           self.routing_key),
                           exchange=rpc_exchange(self.container.config),
                           routing_key=self.routing_key, durable=False,
                           queue_arguments={"x-expires": RPC_REPLY_QUEUE_TTL})

    def setup(self):
        super().setup()
        self.renew()

    def consume_ready(self):
        if not self.ready.ready():
            self.ready.send()

    def connection_lost(self):
        self.renew()  # declared when the consumer is back
        # after the answers already read off the lost connection, whose handlers
        # are spawned but have not run yet
        self.container.spawn_managed_thread(self._fail_waiting, identifier="answers lost")

    def _fail_waiting(self):
        waiting, self._reply_events = self._reply_events, {}
        for event in waiting.values():
            if not event.ready():
                event.send_exception(AnswerLost(
                    "the broker connection its answer would come on was lost"))


def _calls_of(contract, methods):
    """The contract's methods a ServiceRpc may call: `methods`, or all when None."""
    if methods is None:
        return frozenset(contract.methods)
    unknown = set(methods) - set(contract.methods)
    if unknown or not methods:
        raise ValueError(f"{contract.service} declares no method(s) {sorted(unknown)}"
                         if unknown else f"methods= names no {contract.service} method")
    return frozenset(methods)


class ServiceRpc(RpcProxy):
    """A dependency calling one service through its contract, guarded.

    Example: ``inventory = ServiceRpc(contracts.inventory.CONTRACT)`` then
    ``self.inventory.get_product(product_id=1)``. Each call follows the target's
    policy in RPC_TARGETS (`mesh.messaging.policy`): its timeout (unless given
    here), retries for idempotent reads, and its guard (mesh.messaging.guard),
    which fails fast with `ServiceUnavailable` while the service has no running
    instance, its circuit is open or too many calls to it are in flight.
    """

    metrics = Metrics()
    rpc_reply_listener = ContractReplyListener()
    shared_guards = Guards()

    def __init__(self, contract, timeout=None, methods=None):
        """`methods`: the contract's methods this service calls, when not all of
        them; its broker identity may publish only those (mesh.ops.grants)."""
        super().__init__(contract.service)
        self.contracts = {contract.service: contract}
        self.timeout = timeout
        self.methods = {contract.service: _calls_of(contract, methods)}
        self.guards, self.calls = {}, {}

    def setup(self):
        super().setup()
        config = self.container.config
        self.exchange = rpc_exchange(config)
        counters = (
            self.metrics.counter(
                "mesh_rpc_calls", "Calls to another service by outcome: ok, error (an "
                "answer), timeout, failed (transport), refused (by its guard), "
                "expired (not made: its request had no time left)",
                ["target", "method", "outcome"]),
            self.metrics.counter(
                "mesh_rpc_retries", "Idempotent reads sent again after a timeout or a "
                "transport failure", ["target", "method"]),
            self.metrics.counter(
                "mesh_rpc_rejected", "Calls refused at once by the target's guard, by "
                "cause: no_instance, broker_down, circuit_open, concurrency",
                ["target", "cause"]))
        for name in self.contracts:
            policy = policy_for(config, name, self.timeout)
            # the container's one guard of the target: its circuit, presence and gauges
            self.guards[name] = self.shared_guards.guard(name, policy)
            self.calls[name] = GuardedCall(self.container.service_name, name,
                                           self.guards[name], policy, counters)

    def get_dependency(self, worker_ctx):
        (contract,) = self.contracts.values()
        return self.proxy(worker_ctx, contract)

    def proxy(self, worker_ctx, contract):
        return ContractServiceProxy(worker_ctx, contract, self.methods[contract.service],
                                    self.rpc_reply_listener, self.calls[contract.service],
                                    self.exchange)


class ServiceRpcs(ServiceRpc):
    """Like `ServiceRpc`, for several services: ``self.rpc["inventory"].get_product(...)``."""

    def __init__(self, contracts, timeout=None, methods=None):
        """`methods`: `{service: the methods called}`, for those not called in full."""
        contracts, methods = dict(contracts), dict(methods or {})
        super().__init__(next(iter(contracts.values())), timeout)
        self.contracts = contracts
        unknown = set(methods) - set(contracts)
        if unknown:
            raise ValueError(f"methods= names services not called: {sorted(unknown)}")
        self.methods = {name: _calls_of(contract, methods.get(name))
                        for name, contract in contracts.items()}

    def get_dependency(self, worker_ctx):
        return {name: self.proxy(worker_ctx, contract)
                for name, contract in self.contracts.items()}
