"""Readiness: does the broker answer, and does each service have a consumer?"""
import ssl
import time

import redis
from amqp.exceptions import NotFound, PreconditionFailed, ResourceLocked
from eventlet.semaphore import Semaphore
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.exceptions import ConfigurationError
from nameko.extensions import DependencyProvider

from mesh.core.metrics import OpsServer
from mesh.messaging.tls import broker_connection, tls_options
from mesh.messaging.topology import dlq_name, rpc_queue

__all__ = ["broker_refusal", "queue_state", "mismatch", "consumers", "service_queues",
           "check_readiness", "Readiness", "broker_unreachable", "refuse_mismatched"]


def queue_state(connection, queue):
    """`(messages ready, consumers)` of `queue`; None when it does not exist (yet).

    A passive declare answers at once; the broker's management API reports
    consumers seconds late. An exclusive queue (a broadcast handler's) cannot be
    declared from another connection: it exists, with its one consumer, and its
    depth is not ours to read (0).
    """
    # a channel each: a failed passive declare closes its channel
    with connection.channel() as channel:
        try:
            _, messages, consumers = channel.queue_declare(queue, passive=True)
        except NotFound:
            return None
        except ResourceLocked:
            return 0, 1
    return messages, consumers


def refuse_mismatched(amqp_uri, queues):
    """Raise ConfigurationError naming the first of `queues` (kombu Queues about
    to be declared) that already exists with other arguments, typically another
    QUEUE_TYPE. Unchecked, the broker refuses the declare by closing the
    channel, and the consumer reconnects and fails again for ever."""
    with broker_connection(amqp_uri) as connection:
        for queue in queues:
            if queue_state(connection, queue.name) is None:
                continue  # made as declared when it is first needed
            why = mismatch(connection, queue)
            if why:
                raise ConfigurationError(
                    f"queue {queue.name} exists with other arguments ({why}); "
                    "a queue's type or bound cannot change in place: see docs "
                    "\"Quorum queues\" (a DLQ: \"Dead letters\")")


def mismatch(connection, queue):
    """Why the broker refuses `queue` (a kombu Queue) as declared here, which it
    holds with other arguments; None when it takes it (or makes it)."""
    with connection.channel() as channel:
        try:
            channel.queue_declare(queue.name, durable=queue.durable,
                                  auto_delete=queue.auto_delete,
                                  arguments=queue.queue_arguments)
        except PreconditionFailed as exc:
            return exc.reply_text or "PRECONDITION_FAILED"
    return None


def consumers(connection, service):
    """How many instances consume `service`'s RPC queue (0 when it has none)."""
    state = queue_state(connection, rpc_queue(service))
    return state[1] if state else 0


def service_queues(connection, service, serves_rpc, handlers):
    """`{instances, queues, dead_letters}` of one service, by passive declares.

    `handlers` holds `(lasting queue, queue consumed)` for each event handler, the
    second None when unknown (a broadcast handler seen from outside its process).
    `queues` maps each queue consumed to the messages waiting in it, and
    `dead_letters` each lasting queue to those in its DLQ; `instances` counts the
    consumers on the RPC queue, or on the first handler queue of a service that
    serves no RPC (None when it has none).
    """
    consumed = ([rpc_queue(service)] if serves_rpc else []) + \
        [queue for _, queue in handlers if queue is not None]
    report = {"instances": None, "queues": {}, "dead_letters": {}}
    for queue in consumed:
        messages, running = queue_state(connection, queue) or (0, 0)
        report["queues"][queue] = messages
        if queue == consumed[0]:
            report["instances"] = running
    for lasting, _ in handlers:
        report["dead_letters"][lasting] = \
            (queue_state(connection, dlq_name(lasting)) or (0,))[0]
    return report


def broker_unreachable(amqp_uri, timeout=3.0):
    """None when a broker of `amqp_uri` (each of a failover list in turn) accepts
    a connection, else why not (the exception's type and message)."""
    try:
        with broker_connection(amqp_uri, connect_timeout=timeout, socket_timeout=timeout,
                               transport_options={"max_retries": 0}) as connection:
            connection.connect()
    except Exception as exc:  # refused, unresolvable, timed out, bad credentials ...
        return f"{type(exc).__name__}: {exc}"
    return None


def broker_refusal(amqp_uri, timeout=5.0):
    """Why the broker will never take this process's connections as configured,
    or None. TLS that does not verify, or TLS against a plain port, is for good;
    so is plain AMQP against a TLS port (the broker drops it in the handshake).
    An unreachable broker is not a refusal: it may be starting, and services wait."""
    try:
        with broker_connection(amqp_uri, connect_timeout=timeout, socket_timeout=timeout,
                               transport_options={"max_retries": 0}) as connection:
            connection.connect()
            return None
    except ssl.SSLCertVerificationError as exc:
        return (f"TLS with the broker failed (certificate verify failed: "
                f"{exc.verify_message}): check AMQP_SSL (ca_certs names the CA that "
                "signed the broker's certificate)")
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return None  # closed in the handshake: a node restarting, say; wait for it
    except ssl.SSLError as exc:
        return (f"TLS with the broker failed ({exc.reason or exc}): check AMQP_SSL "
                "(ca_certs names the CA that signed the broker's certificate) and that "
                "the port speaks TLS")
    except OSError as exc:
        closed = isinstance(exc, ConnectionResetError) or "unexpectedly closed" in str(exc)
        if closed and not tls_options(amqp_uri) and not amqp_uri.startswith("amqps"):
            return ("the broker closed the connection in the AMQP handshake: a TLS "
                    "port needs an amqps:// AMQP_URI (and AMQP_SSL)")
        return None  # a node restarting, a load balancer: wait for it
    except Exception:  # refused, timed out, bad credentials: said where it happens
        return None


def check_readiness(amqp_uri, services, redis_url=None, timeout=2.0, redis_decides=True):
    """`(ready, checks)`: ready when the broker answers, and Redis too when
    `redis_url` is set and `redis_decides` (the limits fail closed without it).
    Each of `services` is checked as well, "ok" or "no instance", without
    deciding readiness: a missing service makes only the routes that need it
    answer 503 (its guard says so), and one bad rollout of it must not take
    every gateway out of its load balancer."""
    checks = {}
    try:
        with broker_connection(amqp_uri, connect_timeout=timeout, socket_timeout=timeout,
                               transport_options={"max_retries": 0}) as connection:
            connection.connect()
            checks["broker"] = "ok"
            for service in services:
                checks[service] = "ok" if consumers(connection, service) else "no instance"
    except Exception as exc:  # any failure to reach the broker means "not ready"
        checks["broker"] = f"unreachable: {type(exc).__name__}"
        checks.update({service: "unknown" for service in services if service not in checks})
    if redis_url:
        try:
            with redis.Redis.from_url(redis_url, socket_connect_timeout=timeout,
                                      socket_timeout=timeout) as client:
                client.ping()
            checks["redis"] = "ok"
        except redis.RedisError as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    ready = checks["broker"] == "ok" and (
        checks.get("redis", "ok") == "ok" or not redis_decides)
    return ready, checks


class Readiness(DependencyProvider):
    """Gives workers a callable that checks the broker, Redis when REDIS_URL is
    set, and the services (by default every other one in config's SERVICES).

    A result is reused for `max_age` seconds, and requests arriving while one
    check runs wait for it: however often /ready is asked, the broker sees at
    most one connection a second from each gateway."""

    ops = OpsServer()

    def __init__(self, services=None, max_age=1.0, clock=time.monotonic):
        self.services = list(services) if services is not None else None
        self.max_age, self.clock = max_age, clock
        self.result, self.expires = None, 0.0
        self.checking = Semaphore()

    def setup(self):
        if self.services is None:
            self.services = [name for name in self.container.config.get("SERVICES", {})
                             if name != self.container.service_name]
        self.ops.add_readiness(self.fresh)  # for the kubelet, on the ops port

    def check(self):
        config = self.container.config
        # with RATE_LIMIT_ON_ERROR=open the gateway serves without Redis: one
        # shared Redis down must not take every gateway out of rotation
        return check_readiness(config[AMQP_URI_CONFIG_KEY], self.services,
                               config.get("REDIS_URL"),
                               redis_decides=config.get("RATE_LIMIT_ON_ERROR") != "open")

    def fresh(self):
        with self.checking:
            if self.result is None or self.clock() >= self.expires:
                self.result = self.check()
                self.expires = self.clock() + self.max_age
            return self.result

    def get_dependency(self, worker_ctx):
        return self.fresh
