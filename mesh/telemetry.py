"""`telemetry = Telemetry()`: every worker of a service logged, measured and traced.

Each worker gives one log line (entrypoint, request id, duration, outcome, error
type), counts in `mesh_worker_*` metrics and, when tracing is on, one span. The
same extension reports the depth of the service's queues and dead-letter queues
at scrape time, and starts the service's ops port (/metrics, /health).
"""
import logging
import time
from weakref import WeakKeyDictionary

from kombu import Connection
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.timer import Timer

from mesh import logs
from mesh.handlers import MeshEventHandler
from mesh.health import service_queues
from mesh.metrics import Metrics, OpsServer
from mesh.tracing import Tracing

__all__ = ["Telemetry", "outcome_of"]

log = logging.getLogger("mesh.worker")


def outcome_of(entrypoint, exc_info):
    """ok, expected_error (an answer the contract declares) or error."""
    if exc_info is None:
        return "ok"
    return "expected_error" if isinstance(exc_info[1], entrypoint.expected_exceptions) \
        else "error"


class Telemetry(DependencyProvider):
    """Observes every worker of its service; the dependency is the `Metrics`."""

    metrics = Metrics()
    ops = OpsServer()
    tracing = Tracing()

    def setup(self):
        self.service = self.container.service_name
        self.amqp_uri = self.container.config[AMQP_URI_CONFIG_KEY]
        self.started = WeakKeyDictionary()
        self.rpc_served = any(isinstance(e, Rpc) for e in self.container.entrypoints)
        self.metrics.add("queue depths", self.sample_queues)

    def get_dependency(self, worker_ctx):
        return self.metrics

    def worker_setup(self, worker_ctx):
        entrypoint = worker_ctx.entrypoint.method_name
        logs.bind(service=self.service, entrypoint=entrypoint,
                  request_id=worker_ctx.context_data.get("request_id"))
        self.metrics.workers_busy.inc()
        self.started[worker_ctx] = (time.perf_counter(), self.tracing.start_span(worker_ctx))

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started, span = self.started.get(worker_ctx, (time.perf_counter(), None))
        seconds = time.perf_counter() - started
        entrypoint = worker_ctx.entrypoint
        outcome = outcome_of(entrypoint, exc_info)
        error_type = type(exc_info[1]).__name__ if exc_info else None
        self.metrics.worker_calls.labels(self.service, entrypoint.method_name,
                                         outcome).inc()
        self.metrics.worker_seconds.labels(self.service, entrypoint.method_name) \
            .observe(seconds)
        self.tracing.end_span(span, outcome, exc_info)
        level = logging.WARNING if outcome == "error" else logging.INFO
        if outcome == "ok" and (isinstance(entrypoint, Timer) or
                                getattr(entrypoint, "quiet", False)):
            level = logging.DEBUG  # a timer's tick or a probe is not news
        log.log(level, "%s %s in %.1f ms%s", entrypoint.method_name, outcome,
                seconds * 1000, f" ({error_type})" if error_type else "",
                extra={"duration_ms": round(seconds * 1000, 3), "outcome": outcome,
                       **({"error_type": error_type} if error_type else {})})

    def worker_teardown(self, worker_ctx):
        self.metrics.workers_busy.dec()
        self.started.pop(worker_ctx, None)
        logs.unbind()

    def handler_queues(self):
        # asked at scrape time: each handler names its queue in its own setup
        return sorted({e.queue.name for e in self.container.entrypoints
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
        handler_queues = self.handler_queues()
        if not self.rpc_served and not handler_queues:
            return []  # the gateway: no queue of its own to ask the broker about
        with Connection(self.amqp_uri, connect_timeout=2) as connection:
            report = service_queues(connection, self.service, self.rpc_served,
                                    handler_queues)
        if self.rpc_served:
            instances.add_metric([self.service], report["instances"])
        for queue, messages in report["queues"].items():
            waiting.add_metric([self.service, queue], messages)
        for queue, messages in report["dead_letters"].items():
            parked.add_metric([self.service, queue], messages)
        return [waiting, parked, instances]
