"""When the caller of the request being served stops waiting: its `Deadline`.

An RPC request carries it (as epoch seconds, mesh.messaging.rpc's EXPIRES header);
the service drops a request whose deadline has passed, and no call the worker
makes waits longer, nor is made with less than MIN_CALL_SECONDS left. The one
place that reads the clock for it.
"""
import dataclasses
import math
import time

from mesh.core.config import CALL_POLICY_FIELDS

__all__ = ["Deadline", "NEVER", "MIN_CALL_SECONDS"]

# a call is not made with less time left than the shortest timeout a target may have
MIN_CALL_SECONDS = CALL_POLICY_FIELDS["timeout"][1]


@dataclasses.dataclass(frozen=True, slots=True)
class Deadline:
    """An instant in epoch seconds (`at`), or None: one that never passes (an event,
    an HTTP request, a request from a caller that sent none)."""

    at: float | None = None

    @classmethod
    def of(cls, value):
        """The deadline a header or context value says: epoch seconds, else NEVER
        (NaN too, which no comparison would ever pass, as before it had one)."""
        if isinstance(value, (int, float)) and not math.isnan(value):
            return cls(value)
        return NEVER

    def left(self):
        """Seconds left (negative once passed); infinite for NEVER."""
        return math.inf if self.at is None else self.at - time.time()

    def passed(self):
        return self.left() < 0

    def allows_call(self, after=0):
        """Whether a call may be made, `after` seconds from now (a retry's pause):
        at least MIN_CALL_SECONDS would be left."""
        return self.left() - after >= MIN_CALL_SECONDS

    def cap(self, timeout):
        """`timeout`, or the time left when that is shorter (at least 1 ms), and the
        words a timeout's message adds when it is capped ("" when not)."""
        left = self.left()
        if left < timeout:
            return max(left, 0.001), ", all the time left of the request it serves"
        return timeout, ""


NEVER = Deadline()
