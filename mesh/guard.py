"""Guards for calls to a service: refuse at once when it has no running instance,
and open a circuit (pybreaker) after repeated failures, so callers fail fast.

A guard counts timeouts, unknown services and unexpected errors as failures;
a contract's expected errors (not found, conflict, ...) are answers, not failures.
After CIRCUIT_FAIL_MAX failures in a row the circuit opens for
CIRCUIT_RESET_SECONDS; then one call goes through as a probe, and its success
closes the circuit.
"""
import logging

import eventlet
import pybreaker
from kombu import Connection

from contracts.base import ContractError
from mesh.health import consumers

__all__ = ["ServiceUnavailable", "Guard", "watch_presence", "CIRCUIT_STATES"]

log = logging.getLogger(__name__)
PRESENCE_INTERVAL = 1.0
# how the circuit's state is reported as a number (the mesh_circuit_state gauge)
CIRCUIT_STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1,
                  pybreaker.STATE_OPEN: 2}


class ServiceUnavailable(Exception):
    """The service has no running instance, or its circuit is open."""

    def __init__(self, service, reason, retry_after=5):
        super().__init__(f"{service} is unavailable: {reason}")
        self.service, self.retry_after = service, retry_after


class Guard:
    """The state of one target service, shared by all workers of a container."""

    def __init__(self, service, amqp_uri, fail_max=5, reset_seconds=10.0):
        self.service, self.amqp_uri = service, amqp_uri
        self.present = True  # until the watcher learns otherwise
        self.reset_seconds = reset_seconds
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_seconds, exclude=[ContractError],
            throw_new_error_on_trip=False, name=service)

    @property
    def state(self):
        return self.breaker.current_state

    def call(self, fn):
        if not self.present and not self._present_now():
            raise ServiceUnavailable(self.service, "no running instance",
                                     retry_after=int(PRESENCE_INTERVAL) + 1)
        try:
            return self.breaker.call(fn)
        except pybreaker.CircuitBreakerError:
            raise ServiceUnavailable(self.service, "its circuit is open after repeated "
                                     "failures", retry_after=max(1, round(
                                         self.reset_seconds))) from None


    def _present_now(self):
        """Ask the broker again: the watcher's answer may be up to a second old,
        and a service that has just started must not be refused."""
        try:
            with Connection(self.amqp_uri, connect_timeout=2) as connection:
                self.present = bool(consumers(connection, self.service))
        except Exception:  # broker away: the call could not succeed anyway
            return False
        return self.present


def watch_presence(amqp_uri, guards, interval=PRESENCE_INTERVAL):
    """Forever: mark each guard present while its RPC queue has a consumer."""
    connection = None
    while True:
        try:
            if connection is None:
                connection = Connection(amqp_uri, connect_timeout=2)
                connection.connect()
            for guard in guards:
                count = consumers(connection, guard.service)
                if guard.present != bool(count):
                    log.warning("%s is %s", guard.service,
                                "back" if count else "gone: no running instance")
                guard.present = bool(count)
        except Exception as exc:  # broker away: leave the guards as they were
            log.debug("presence check failed: %s", exc)
            if connection is not None:
                connection.release()
            connection = None
        eventlet.sleep(interval)
