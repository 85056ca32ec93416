"""OpenTelemetry spans per worker, when OTEL_EXPORTER_OTLP_ENDPOINT is set; else off.

No maintained OpenTelemetry instrumentation supports nameko 2, so the W3C trace
context travels as nameko context data (`traceparent`): nameko already copies
context data into the headers of every RPC call, and the outbox copies it into
every event, so a span's children are the workers its calls and events start.
"""
import re

from nameko.extensions import SharedExtension

__all__ = ["Tracing", "TRACEPARENT", "valid_traceparent"]

TRACEPARENT = "traceparent"
W3C_TRACEPARENT = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}$")


def valid_traceparent(value):
    """The W3C `traceparent` header if it is well formed, else None."""
    match = W3C_TRACEPARENT.match(value or "")
    if not match or match["version"] == "ff" or not int(match["trace"], 16) or \
            not int(match["span"], 16):
        return None
    return value


class Tracing(SharedExtension):
    """The container's tracer; `start_span(worker_ctx)` → span (or None when off)."""

    def setup(self):
        config = self.container.config
        self.endpoint = config.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        self.provider = self.tracer = None
        if not self.endpoint:
            return
        # imported only when on: tracing costs nothing when it is off
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import \
            TraceContextTextMapPropagator

        self.propagator = TraceContextTextMapPropagator()
        self.provider = TracerProvider(resource=Resource.create(
            {"service.name": self.container.service_name}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=self.endpoint.rstrip("/") + "/v1/traces", timeout=5)))
        self.tracer = self.provider.get_tracer("mesh")

    def stop(self):
        if self.provider is not None:
            self.provider.shutdown()  # flushes the spans not yet exported

    kill = stop

    def start_span(self, worker_ctx):
        """A span for this worker, child of the caller's; its context goes on to
        every RPC call and event the worker causes."""
        if self.tracer is None:
            return None
        from opentelemetry import trace

        data = worker_ctx.data  # context_data is a copy; this is what calls send on
        parent = self.propagator.extract({TRACEPARENT: data.get(TRACEPARENT) or ""})
        entrypoint = worker_ctx.entrypoint
        span = self.tracer.start_span(
            f"{self.container.service_name}.{entrypoint.method_name}", context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"mesh.service": self.container.service_name,
                        "mesh.entrypoint": entrypoint.method_name,
                        "mesh.entrypoint_type": type(entrypoint).__name__,
                        "mesh.request_id": data.get("request_id") or ""})
        carrier = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        data[TRACEPARENT] = carrier[TRACEPARENT]
        return span

    def end_span(self, span, outcome, exc_info):
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("mesh.outcome", outcome)
        if exc_info is not None:
            span.record_exception(exc_info[1])
            if outcome == "error":
                span.set_status(Status(StatusCode.ERROR, type(exc_info[1]).__name__))
        span.end()
