"""Guards for calls to a service: refuse at once when it has no running instance
(unless its instances are moving to another broker node, see `Guard._moving`),
and open a circuit (pybreaker) after repeated failures, so callers fail fast.

A guard counts only what says the service is unwell as a failure: a timeout, a
transport error, an unknown service. Anything else is an answer (a contract's
expected errors, and errors a client could provoke), so no client can open a
circuit for everyone. After CIRCUIT_FAIL_MAX failures in a row the circuit opens
for CIRCUIT_RESET_SECONDS; then one call goes through as a probe, and its success
closes the circuit. Beyond `concurrency` calls in flight at once, one more is
refused at once rather than queued behind them.

Calls run concurrently: pybreaker's own `call()` holds its lock for the whole
call, which under eventlet lets one call at a time reach the service, and starts
a queued call's timeout only once it gets the lock. Its `calling()` block holds
the lock only to check the state and to count the outcome.
"""
import functools
import logging
import socket
import time

import eventlet
import pybreaker
from amqp.exceptions import ConnectionError as AmqpConnectionError
from kombu.exceptions import OperationalError
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.exceptions import RpcTimeout, UnknownService
from nameko.extensions import SharedExtension

from mesh.core.metrics import Metrics
from mesh.messaging import nodes
from mesh.messaging.health import consumers
from mesh.messaging.tls import broker_connection, let_go

__all__ = ["ServiceUnavailable", "AnswerLost", "Guard", "Guards", "watch_presence",
           "CIRCUIT_STATES"]

log = logging.getLogger(__name__)
PRESENCE_INTERVAL = 1.0
# how the circuit's state is reported as a number (the mesh_circuit_state gauge)
CIRCUIT_STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1,
                  pybreaker.STATE_OPEN: 2}
# what says the service (or the way to it) is unwell; everything else is an answer
FAILURES = (RpcTimeout, UnknownService, OperationalError, AmqpConnectionError,
            socket.error)


class AnswerLost(RpcTimeout):
    """The connection a call's answer would have come on was lost: it will not
    come, so the call fails now rather than at its timeout (and is taken as one:
    retried if idempotent, `Busy` to a caller's caller, 504 at the gateway). It
    says nothing of the service called, whose circuit does not count it."""


def _an_answer(exc):
    return isinstance(exc, AnswerLost) or not isinstance(exc, FAILURES)


class ServiceUnavailable(Exception):
    """The service has no running instance, its circuit is open, or too many calls
    to it are in flight; `cause` says which (the mesh_rpc_rejected_total label)."""

    def __init__(self, service, reason, retry_after=5, cause="unavailable"):
        super().__init__(f"{service} is unavailable: {reason}")
        self.service, self.retry_after, self.cause = service, retry_after, cause


class Guard:
    """The state of one target service, shared by all workers of a container."""

    def __init__(self, service, amqp_uri, fail_max=5, reset_seconds=10.0,
                 concurrency=None):
        self.service, self.amqp_uri = service, amqp_uri
        # None until the watcher first looks: a call before then asks the broker
        self.present = None
        self.seen_at = None  # when (monotonic) it was last seen with an instance
        self.broker_down = False  # the watcher cannot reach the broker
        self.reset_seconds = reset_seconds
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_seconds, exclude=[_an_answer],
            throw_new_error_on_trip=False, name=service)
        self.probing = False  # a half-open circuit lets one call through at a time
        self.concurrency, self.in_flight = concurrency, 0
        nodes.on_lost(self)

    def node_lost(self, where):
        """The process lost a broker node: the calls that failed meanwhile failed
        on the way, not at the service, whose circuit starts afresh (else it would
        stay open for reset_seconds after the mesh has moved to another node)."""
        self.breaker.close()

    @property
    def state(self):
        return self.breaker.current_state

    def call(self, fn):
        if self.broker_down:
            raise ServiceUnavailable(self.service, "the message broker is unreachable",
                                     retry_after=int(PRESENCE_INTERVAL) + 1,
                                     cause="broker_down")
        if not self.present and not self._moving() and not self._present_now():
            raise ServiceUnavailable(self.service, "no running instance",
                                     retry_after=int(PRESENCE_INTERVAL) + 1,
                                     cause="no_instance")
        if self.probing:
            raise self._open()
        if self.concurrency is not None and self.in_flight >= self.concurrency:
            # waiting for a turn would hold the caller's worker behind a slow target
            raise ServiceUnavailable(self.service, f"{self.concurrency} calls to it are "
                                     "already in flight", retry_after=1,
                                     cause="concurrency")
        probe = self.state != pybreaker.STATE_CLOSED
        self.probing = probe
        self.in_flight += 1
        try:
            with self.breaker.calling():
                return fn()
        except pybreaker.CircuitBreakerError:
            raise self._open() from None
        finally:
            self.in_flight -= 1
            if probe:
                self.probing = False

    def _moving(self):
        """Whether the process lost a broker node moments ago and the service was
        running shortly before: its instances are subscribing again on another
        node, and its RPC queue keeps a call until one has, so the call waits
        (within its timeout) instead of being refused. A service not seen then
        (one that never ran, or was down already) is refused as ever."""
        lost_at = nodes.last_lost()
        return nodes.settling() and self.seen_at is not None and \
            self.seen_at > lost_at - nodes.SETTLE_SECONDS

    def _open(self):
        return ServiceUnavailable(self.service, "its circuit is open after repeated "
                                  "failures", retry_after=max(1, round(self.reset_seconds)),
                                  cause="circuit_open")

    def _present_now(self):
        """Ask the broker again: the watcher's answer may be up to a second old,
        and a service that has just started must not be refused."""
        try:
            with broker_connection(self.amqp_uri, connect_timeout=2,
                                   socket_timeout=2.0) as connection:
                self.saw(consumers(connection, self.service))
        except Exception:  # broker away: the call could not succeed anyway
            return False
        return self.present

    def saw(self, count):
        """What a look at the service's RPC queue found: `count` consumers."""
        self.present = bool(count)
        if count:
            self.seen_at = time.monotonic()


class Guards(SharedExtension):
    """The guards of one container, one per service it calls however many
    `ServiceRpc`s call it: one circuit and one presence each, one watcher for
    them all, and one series of each gauge per target."""

    metrics = Metrics()

    def __init__(self):
        super().__init__()
        self.guards = {}

    def setup(self):
        self.metrics.add("circuits", self.sample)

    def guard(self, service, policy):
        """`service`'s guard, made by its first caller with `policy`'s bounds (a
        target's bounds are the same for every caller: RPC_TARGETS)."""
        if service not in self.guards:
            # asked from the callers' setup, which may run before this one's
            self.guards[service] = Guard(
                service, self.container.config[AMQP_URI_CONFIG_KEY],
                policy.circuit_fail_max, policy.circuit_reset_seconds, policy.concurrency)
        return self.guards[service]

    def start(self):
        if self.guards:
            self.container.spawn_managed_thread(functools.partial(
                watch_presence, self.container.config[AMQP_URI_CONFIG_KEY],
                list(self.guards.values())), identifier="service presence")

    def sample(self):
        circuits = self.metrics.gauge(
            "mesh_circuit_state", "The circuit to a service: 0 closed, 1 half-open, 2 open",
            ["target"])
        present = self.metrics.gauge(
            "mesh_target_present", "1 while a called service has a running instance",
            ["target"])
        in_flight = self.metrics.gauge(
            "mesh_rpc_in_flight", "Calls to a service waiting for its answer now",
            ["target"])
        for name, guard in sorted(self.guards.items()):
            circuits.add_metric([self.metrics.service, name], CIRCUIT_STATES[guard.state])
            present.add_metric([self.metrics.service, name], int(bool(guard.present)))
            in_flight.add_metric([self.metrics.service, name], guard.in_flight)
        return [circuits, present, in_flight]


def watch_presence(amqp_uri, guards, interval=PRESENCE_INTERVAL):
    """Forever: mark each guard present while its RPC queue has a consumer, and
    all of them broker_down while the broker cannot be reached."""
    connection = None
    while True:
        try:
            connection = _look_again(amqp_uri, connection, guards)
        except Exception as exc:  # broker away: calls fail fast until it is back
            if not any(guard.broker_down for guard in guards):
                log.warning("the message broker is unreachable (%s); answering 503", exc)
            for guard in guards:
                guard.broker_down = True
            connection = None
        eventlet.sleep(interval)


def _look_again(amqp_uri, connection, guards):
    """Look through `connection` (a new one when None); when that fails, once more
    at once through a new one: its node may have been lost, and another may well
    answer. Returns the connection that answered; raises when none did, or when
    no node takes a new connection."""
    for attempt in (1, 2):
        connection = connection or _watching(amqp_uri)
        try:
            _look(connection, guards)
            return connection
        except Exception:
            let_go(connection)  # no goodbye: the node may not answer one
            connection = None
            if attempt == 2:
                raise


def _watching(amqp_uri):
    """A connection for the watcher, each node tried once: it must say soon that
    no node answers (kombu's `connect` sleeps 2 s before trying again)."""
    # its socket waits the default 5 s: a busy broker is not a gone one
    connection = broker_connection(amqp_uri, connect_timeout=2)
    connection.ensure_connection(max_retries=amqp_uri.count(";"), interval_start=0,
                                 interval_step=0, reraise_as_library_errors=False)
    return connection


def _look(connection, guards):
    if any(guard.broker_down for guard in guards):
        log.warning("the message broker is reachable again")
    for guard in guards:
        count = consumers(connection, guard.service)
        if guard.present is not None and guard.present != bool(count):
            log.warning("%s is %s", guard.service,
                        "back" if count else "gone: no running instance")
        guard.saw(count)
        guard.broker_down = False
