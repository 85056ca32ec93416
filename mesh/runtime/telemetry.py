"""`telemetry = Telemetry()`: every worker of a service logged, measured and traced.

Each worker counts in `mesh_worker_*` metrics, gives one log line (entrypoint,
request id, duration, outcome, error type) and, when tracing is on, one span.
The line of an error or of a call slower than SLOW_CALL_SECONDS is a WARNING and
always shows; an answered call's is INFO on the `mesh.worker` logger, whose level
(MESH_WORKER_LOG_LEVEL, WARNING by default) decides: a line per call costs about
a tenth of a service's throughput. The
same extension reports the depth of the service's queues and dead-letter queues
at scrape time, and starts the service's ops port (/metrics, /health).
"""
import logging
import time
from weakref import WeakKeyDictionary

from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.timer import Timer

from mesh.core import logs
from mesh.core.config import setting
from mesh.core.metrics import Metrics, OpsServer
from mesh.core.tracing import Tracing
from mesh.messaging.handlers import MeshEventHandler
from mesh.messaging.health import service_queues
from mesh.messaging.tls import broker_connection
from mesh.runtime.probes import Probes

__all__ = ["Telemetry", "outcome_of"]

log = logging.getLogger("mesh.worker")


def outcome_of(entrypoint, exc_info):
    """ok, expected_error (an answer the contract declares) or error."""
    if exc_info is None:
        return "ok"
    return "expected_error" if isinstance(exc_info[1], entrypoint.expected_exceptions) \
        else "error"


def _said(exc):
    try:
        return " ".join(str(exc).split())[:200]
    except Exception:  # a broken __str__ must not take the worker's line with it
        return "?"


class Telemetry(DependencyProvider):
    """Observes every worker of its service; the dependency is the `Metrics`."""

    metrics = Metrics()
    ops = OpsServer()
    tracing = Tracing()
    probes = Probes()

    def setup(self):
        self.service = self.container.service_name
        self.amqp_uri = self.container.config[AMQP_URI_CONFIG_KEY]
        self.started = WeakKeyDictionary()
        self.rpc_served = any(isinstance(e, Rpc) for e in self.container.entrypoints)
        self.slow_seconds = setting(self.container.config, "SLOW_CALL_SECONDS")
        self.series = {}
        self.metrics.add("queue depths", self.sample_queues)

    def get_dependency(self, worker_ctx):
        return self.metrics

    def worker_setup(self, worker_ctx):
        entrypoint = worker_ctx.entrypoint.method_name
        logs.bind(service=self.service, entrypoint=entrypoint,
                  request_id=worker_ctx.data.get("request_id"))
        self.metrics.workers_busy.inc()
        self.started[worker_ctx] = (time.perf_counter(), self.tracing.start_span(worker_ctx))

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started, span = self.started.get(worker_ctx, (time.perf_counter(), None))
        seconds = time.perf_counter() - started
        entrypoint = worker_ctx.entrypoint
        outcome = outcome_of(entrypoint, exc_info)
        calls, duration = self._series(entrypoint.method_name, outcome)
        calls.inc()
        duration.observe(seconds)
        self.tracing.end_span(span, outcome, exc_info)
        level = self._level(entrypoint, outcome, seconds)
        if not log.isEnabledFor(level):
            return
        error_type = type(exc_info[1]).__name__ if exc_info else None
        why = f" ({error_type})" if error_type else ""
        if outcome == "expected_error":
            # which call timed out, which input was refused: the line's news, and
            # said to the caller anyway (an unexpected error's text may hold data)
            said = _said(exc_info[1])
            why = f" ({error_type}: {said})" if said else why
        slow = outcome != "error" and seconds >= self.slow_seconds
        log.log(level, "%s %s in %.1f ms%s%s", entrypoint.method_name, outcome,
                seconds * 1000, why, " (slow)" if slow else "",
                extra={"duration_ms": round(seconds * 1000, 3), "outcome": outcome,
                       **({"error_type": error_type} if error_type else {}),
                       **({"slow": True} if slow else {})})

    def _level(self, entrypoint, outcome, seconds):
        """Errors and slow calls are news; an answered call is INFO, which the
        `mesh.worker` logger shows only when MESH_WORKER_LOG_LEVEL asks for it;
        a timer's tick or a probe is DEBUG."""
        if outcome == "error" or seconds >= self.slow_seconds:
            return logging.WARNING
        if outcome == "ok" and (isinstance(entrypoint, Timer) or
                                getattr(entrypoint, "quiet", False)):
            return logging.DEBUG
        return logging.INFO

    def _series(self, entrypoint, outcome):
        """The labelled counter and histogram of one entrypoint and outcome (kept:
        looking a labelled child up on every call costs a lock and a dict)."""
        key = (entrypoint, outcome)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = (
                self.metrics.worker_calls.labels(self.service, entrypoint, outcome),
                self.metrics.worker_seconds.labels(self.service, entrypoint))
        return series

    def worker_teardown(self, worker_ctx):
        self.metrics.workers_busy.dec()
        self.started.pop(worker_ctx, None)
        logs.unbind()

    def handlers(self):
        # asked at scrape time: each handler names its queues in its own setup; a
        # broadcast instance's own queue is exclusive to its consumer's connection
        return sorted({(e.lasting, None if e.queue.exclusive else e.queue.name)
                       for e in self.container.entrypoints
                       if isinstance(e, MeshEventHandler)})

    def sample_queues(self):
        """Messages waiting in the service's queues and dead-letter queues, and how
        many instances consume its RPC queue."""
        waiting = self.metrics.gauge("mesh_queue_messages",
                                     "Messages waiting in one of the service's queues",
                                     ["queue"])
        parked = self.metrics.gauge("mesh_dlq_messages",
                                    "Events parked in a handler's dead-letter queue",
                                    ["queue"])
        instances = self.metrics.gauge("mesh_rpc_consumers",
                                       "Instances consuming the service's RPC queue")
        bound = self.metrics.gauge("mesh_dlq_max_messages",
                                   "Messages one of the service's dead-letter queues "
                                   "holds at most (DLQ_MAX_LENGTH)")
        handlers = self.handlers()
        if not self.rpc_served and not handlers:
            return []  # the gateway: no queue of its own to ask the broker about
        with broker_connection(self.amqp_uri, connect_timeout=2) as connection:
            report = service_queues(connection, self.service, self.rpc_served,
                                    handlers)
        if self.rpc_served:
            instances.add_metric([self.service], report["instances"])
        for queue, messages in report["queues"].items():
            waiting.add_metric([self.service, queue], messages)
        for queue, messages in report["dead_letters"].items():
            parked.add_metric([self.service, queue], messages)
        if handlers:
            bound.add_metric([self.service],
                             setting(self.container.config, "DLQ_MAX_LENGTH"))
        return [waiting, parked, instances, bound]
