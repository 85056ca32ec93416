"""What the operator page shows, read afresh for each request: the mesh's status
(`mesh.ops.status`), this gateway's circuits, the dead-letter groups and, when
asked, one request's trace.

The parts are read one after the other, each within SECTION_SECONDS, as the
operators' commands read them (their broker identity, `mesh.ops.cli._operator`);
a part that fails or takes too long is shown as its error, the others as usual:
the page is most needed when something is down.
"""
import collections
import logging
import re

import eventlet

from mesh.http.server import SAFE_REQUEST_ID
from mesh.messaging.identities import OPERATOR, as_identity
from mesh.ops import dlq, status

__all__ = ["Part", "Query", "collect", "circuits", "query_of"]

log = logging.getLogger(__name__)
SECTION_SECONDS = 10
ORDER_ID = re.compile(r"^\d{1,18}$")
MAX_ERROR = 500  # characters of an error shown

Part = collections.namedtuple("Part", "value error")
Part.__doc__ = "One part of the page: what was read, or why nothing was (text)."


class Query(collections.namedtuple("Query", "request_id order_id refused")):
    """The trace asked for: a request id or an order id, or why the text typed is
    neither (`refused`); all None when no trace was asked for."""

    @property
    def asked(self):
        return any(value is not None for value in self)


def query_of(args):
    """The `Query` of the page's `?trace=ID` or `?order=ID`."""
    request_id = (args.get("trace") or "").strip()
    order = (args.get("order") or "").strip()
    if request_id:
        if not SAFE_REQUEST_ID.match(request_id):
            return Query(None, None, f"{request_id!r} is not a request id (1 to 64 "
                                     "letters, digits, '.', '_' or '-')")
        return Query(request_id, None, None)
    if order:
        if not ORDER_ID.match(order):
            return Query(None, None, f"{order!r} is not an order id (a number)")
        return Query(None, int(order), None)
    return Query(None, None, None)


def circuits(guards):
    """`{target: {state, present, broker_down, in_flight}}` of this gateway
    process's guards (`mesh.messaging.guard.Guard`): each instance has its own."""
    return {name: {"state": guard.state, "present": guard.present,
                   "broker_down": guard.broker_down, "in_flight": guard.in_flight}
            for name, guard in sorted(guards.items())}


def _dead_letter_groups(config):
    return dlq.groups(config["AMQP_URI"], dlq.handler_queues(config))


def _trace(config, query):
    # imported when asked: a trace reads every service's database models
    from mesh.ops import trace

    try:
        return Part(trace.trace(config, query.request_id, order_id=query.order_id), None)
    except trace.UnknownRequest as exc:  # an answer, not a failure of the page
        return Part(None, str(exc))


def _read(what, read, seconds):
    timer = eventlet.Timeout(seconds)
    try:
        found = read()
        return found if isinstance(found, Part) else Part(found, None)
    except eventlet.Timeout as exc:
        if exc is not timer:
            raise
        return Part(None, f"did not answer within {seconds} s")
    except Exception as exc:  # shown in its place; the other parts still are
        log.warning("operator page: cannot read %s: %s: %s", what, type(exc).__name__, exc)
        return Part(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR])
    finally:
        timer.cancel()


def collect(config, guards, query, seconds=SECTION_SECONDS):
    """`{"status", "circuits", "dead_letters"[, "trace"]: Part}` for the page."""
    operator = as_identity(config, OPERATOR)
    reads = {"status": lambda: status.gather(operator),
             "dead_letters": lambda: _dead_letter_groups(operator)}
    if query.refused:
        reads["trace"] = lambda: Part(None, query.refused)
    elif query.asked:
        reads["trace"] = lambda: _trace(operator, query)
    # one after the other: while one part reads a DLQ its messages are unacknowledged,
    # and another reading at once would not see them (nor count them in a depth)
    parts = {what: _read(what, read, seconds) for what, read in reads.items()}
    parts["circuits"] = Part(circuits(guards), None)
    return parts
