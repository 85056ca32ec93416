"""Prometheus metrics: one registry per service container (prometheus-client).

The gateway serves its registry at /metrics on GATEWAY_PORT; every other service
serves its own at /metrics, with /health, on its port in OPS_PORTS (`OpsServer`).
Gauges that describe state outside the process (queue depths, outbox backlog,
saga states) are read when Prometheus scrapes, never by a background loop.
"""
import functools
import json
import logging

import eventlet
import eventlet.wsgi
from nameko.extensions import SharedExtension
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, \
    Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from mesh.core.config import setting

__all__ = ["Metrics", "OpsServer", "Sampled", "exposition"]

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)


def exposition(registry):
    """`(body, content type)` of the Prometheus text format."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class Sampled:
    """A collector calling `sample()` at scrape time for `GaugeMetricFamily`s.

    A failing sample is logged and skipped, so one unreachable dependency
    never hides the rest of the metrics.
    """

    def __init__(self, what, sample):
        self.what, self.sample = what, sample

    def describe(self):
        return []  # not known before a scrape; also stops a sample at registration

    def collect(self):
        try:
            return list(self.sample())
        except Exception as exc:  # the scrape must answer even when a sample cannot
            log.warning("metrics: cannot sample %s: %s", self.what, exc)
            return []


class Metrics(SharedExtension):
    """The container's registry and the metrics every service has.

    Built on first use rather than in `setup()`: nameko sets extensions up in no
    particular order, and the others register their metrics in their own setup.
    """

    @property
    def service(self):
        return self.container.service_name

    @functools.cached_property
    def registry(self):
        registry = CollectorRegistry()
        self.worker_calls = Counter(
            "mesh_worker_calls", "Entrypoint calls by outcome: ok, expected_error, error",
            ["service", "entrypoint", "outcome"], registry=registry)
        self.worker_seconds = Histogram(
            "mesh_worker_duration_seconds", "Time an entrypoint's worker took",
            ["service", "entrypoint"], buckets=LATENCY_BUCKETS, registry=registry)
        self.workers_busy = Gauge("mesh_workers_busy", "Workers running now", ["service"],
                                  registry=registry).labels(self.service)
        Gauge("mesh_workers_max", "Workers a container runs at most (max_workers)",
              ["service"], registry=registry).labels(self.service).set(
            self.container.max_workers)
        return registry

    def add(self, what, sample):
        """Report the `GaugeMetricFamily`s that `sample()` yields on every scrape."""
        self.registry.register(Sampled(what, sample))

    def counter(self, name, documentation, labels=()):
        """The counter `name`, labelled `service` first, then `labels`: made once,
        whichever extension asks first (a counter sums correctly over replicas,
        each counting what it did); counted as ``.labels(self.service, *values)``."""
        counters = self.__dict__.setdefault("counters", {})
        if name not in counters:
            counters[name] = Counter(name, documentation, ["service", *labels],
                                     registry=self.registry)
        elif counters[name]._labelnames != ("service", *labels):
            # a second caller must count the same series, not others under its name
            raise ValueError(f"{name} is counted with labels "
                             f"{counters[name]._labelnames}, not {('service', *labels)}")
        return counters[name]

    def gauge(self, name, documentation, labels=()):
        """A `GaugeMetricFamily` labelled with this service first."""
        return GaugeMetricFamily(name, documentation, labels=["service", *labels])


class OpsServer(SharedExtension):
    """A service's own /metrics and /health, on OPS_HOST and its port in OPS_PORTS,
    and /ready when an extension has registered a check (`add_readiness`): the
    probes of an orchestrator, on a port no client reaches; and the pages an
    extension mounts there (`add_page`: the gateway's operator page)."""

    metrics = Metrics()

    def __init__(self):
        super().__init__()
        self.ready_checks, self.live_checks = [], []
        self.pages = {}

    def add_page(self, prefix, app):
        """Serve `prefix` and every path under it with the WSGI `app`."""
        prefix = prefix.rstrip("/")
        if not prefix.startswith("/") or prefix in ("/metrics", "/health", "/ready"):
            raise ValueError(f"{prefix or '/'!r} cannot be a page of the ops server")
        self.pages[prefix] = app

    def add_readiness(self, check):
        """`check()` → `(ready, checks)`; /ready answers 200 when every one is ready."""
        self.ready_checks.append(check)

    def add_liveness(self, check):
        """`check()` → `(alive, checks)`; /health answers 503 when one is not."""
        self.live_checks.append(check)

    @staticmethod
    def _combined(checks):
        results = [check() for check in checks]
        return (all(ok for ok, _ in results),
                {k: v for _, found in results for k, v in found.items()})

    def setup(self):
        config = self.container.config
        # `mesh serve --replica N` has already moved OPS_PORTS to its own port
        self.address = (setting(config, "OPS_HOST"),
                        setting(config, "OPS_PORTS").get(self.container.service_name, 0))
        self.socket = self.thread = None

    def start(self):
        if not self.address[1]:
            return
        try:
            self.socket = eventlet.listen(self.address)
        except OSError as exc:
            name = self.container.service_name
            raise OSError(exc.errno, f"{name} cannot serve /metrics on {self.address[0]}:"
                          f"{self.address[1]} (OPS_PORT_{name.upper()}): "
                          f"{exc.strerror}") from None
        self.thread = self.container.spawn_managed_thread(
            lambda: eventlet.wsgi.server(self.socket, self.app, log_output=False),
            identifier="ops server")
        log.info("%s serves /metrics and /health on http://%s:%d",
                 self.container.service_name, *self.address)

    def stop(self):
        if self.thread is not None:
            self.thread.kill()
            self.socket.close()
            self.thread = self.socket = None

    kill = stop

    def _page_for(self, path):
        for prefix, app in self.pages.items():
            if path == prefix or path.startswith(prefix + "/"):
                return app
        return None

    def app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        page = self._page_for(path)
        if page is not None:
            return page(environ, start_response)
        if path == "/metrics":
            body, content_type = exposition(self.metrics.registry)
            status = "200 OK"
        else:
            content_type = "application/json"
            if path == "/health":
                alive, checks = self._combined(self.live_checks)
                status = "200 OK" if alive else "503 Service Unavailable"
                payload = {"status": "ok" if alive else "failing",
                           "service": self.container.service_name,
                           **({"checks": checks} if checks else {})}
            elif path == "/ready" and self.ready_checks:
                ready, checks = self._combined(self.ready_checks)
                status = "200 OK" if ready else "503 Service Unavailable"
                payload = {"status": "ready" if ready else "not_ready", "checks": checks}
            else:
                status, payload = "404 Not Found", {"error": {
                    "code": "not_found", "message": f"no route for {path}"}}
            body = json.dumps(payload).encode()
        start_response(status, [("Content-Type", content_type),
                                ("Content-Length", str(len(body)))])
        return [body]
