"""How one process calls one target service: its `CallPolicy` (from RPC_TARGETS)
and the guarded call with retries that every `ServiceRpc` makes.

A call goes through the target's `Guard` (presence, concurrency limit, circuit).
Only a read its contract marks idempotent is sent again, and only after a failure
that says the target is unwell (a timeout, a transport error): an answer, even an
error, is final, and a refusal by the guard (no instance, circuit open, too many
calls in flight) is the fast answer the guard exists to give.
"""
import dataclasses
import logging

import eventlet
from nameko.exceptions import RpcTimeout

from mesh.core.config import setting
from mesh.messaging.deadline import NEVER
from mesh.messaging.guard import FAILURES, ServiceUnavailable

__all__ = ["CallPolicy", "policy_for", "retryable", "GuardedCall", "OUTCOMES",
           "DeadlinePassed"]

log = logging.getLogger(__name__)
# the settings without a global of their own, when RPC_TARGETS sets them nowhere
BUILT_IN = {"retries": 0, "retry_backoff": 0.1, "concurrency": 100}
# the outcomes mesh_rpc_calls_total counts
OUTCOMES = ("ok", "error", "timeout", "failed", "refused", "expired")


class DeadlinePassed(Exception):
    """A call not made: the request it would serve has (next to) no time left,
    its own caller has stopped waiting. Says nothing of the target, whose guard
    never sees it."""


@dataclasses.dataclass(frozen=True)
class CallPolicy:
    """Seconds an attempt waits; attempts more for an idempotent read and the
    first pause between them (doubling); the circuit; calls in flight at most."""

    timeout: float
    retries: int
    retry_backoff: float
    circuit_fail_max: int
    circuit_reset_seconds: float
    concurrency: int

    def delay(self, retry):
        """Seconds before retry number `retry` (0 for the first)."""
        return self.retry_backoff * 2 ** retry


def policy_for(config, target, timeout=None):
    """The policy for calls to `target`: its RPC_TARGETS entry, else `default`'s,
    else RPC_TIMEOUT, CIRCUIT_FAIL_MAX, CIRCUIT_RESET_SECONDS and BUILT_IN; a
    `timeout` given by the caller's code wins over all of them. The values are
    taken as the config holds them: loading it checked them (CallTargets)."""
    values = {"timeout": setting(config, "RPC_TIMEOUT"),
              "circuit_fail_max": setting(config, "CIRCUIT_FAIL_MAX"),
              "circuit_reset_seconds": setting(config, "CIRCUIT_RESET_SECONDS"),
              **BUILT_IN}
    targets = setting(config, "RPC_TARGETS")
    for layer in (targets.get("default"), targets.get(target)):
        values.update(layer or {})
    if timeout is not None:
        values["timeout"] = timeout
    return CallPolicy(**values)


def retryable(method, exc):
    """Whether a call of contract method `method` that raised `exc` may be sent again."""
    return method.idempotent and isinstance(exc, FAILURES)


def outcome_of(exc):
    """How a failed call is counted (see OUTCOMES)."""
    if isinstance(exc, ServiceUnavailable):
        return "refused"
    if isinstance(exc, DeadlinePassed):
        return "expired"
    if isinstance(exc, FAILURES):
        return "timeout" if isinstance(exc, RpcTimeout) else "failed"
    return "error"  # an answer: the target is well


class GuardedCall:
    """Calls to one target through its guard, with its policy's retries, counted in
    `counters` (see `ServiceRpc.setup`): ``GuardedCall(...)(method, name, attempt)``."""

    def __init__(self, caller, target, guard, policy, counters):
        self.caller, self.target, self.guard, self.policy = caller, target, guard, policy
        self.calls, self.retries, self.rejected = counters

    def __call__(self, method, name, attempt, deadline=NEVER):
        """`attempt()` once, and again while `retryable`; its result, or its last
        error. None is made, nor retried, unless `deadline` (a `Deadline`) allows
        a call then."""
        retry = 0
        while True:
            try:
                if not deadline.allows_call():
                    raise DeadlinePassed(f"{self.target}.{name} not called: the request "
                                         "it serves has no time left")
                result = self.guard.call(attempt)
            except Exception as exc:
                if (retry < self.policy.retries and retryable(method, exc) and
                        deadline.allows_call(after=self.policy.delay(retry))):
                    log.info("%s.%s: %s; trying again (%d of %d)", self.target, name,
                             type(exc).__name__, retry + 1, self.policy.retries)
                    self.retries.labels(self.caller, self.target, name).inc()
                    eventlet.sleep(self.policy.delay(retry))
                    retry += 1
                    continue
                if isinstance(exc, ServiceUnavailable):
                    self.rejected.labels(self.caller, self.target, exc.cause).inc()
                self.calls.labels(self.caller, self.target, name, outcome_of(exc)).inc()
                raise
            self.calls.labels(self.caller, self.target, name, "ok").inc()
            return result
