"""Gateway entrypoints: `api` serves a route table, `operation` one plain JSON route."""
import functools

from eventlet.event import Event
from eventlet.semaphore import Semaphore
from nameko.exceptions import ContainerBeingKilled, RpcTimeout, UnknownService
from nameko.extensions import Entrypoint
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from contracts.base import ContractError
from mesh.auth.tokens import Tokens, signing_key
from mesh.core.config import setting
from mesh.core.tracing import TRACEPARENT, valid_traceparent
from mesh.http.auth import authenticate
from mesh.http.errors import ErrorTable, HttpError, json_response
from mesh.http.server import MeshWebServer
from mesh.messaging.guard import ServiceUnavailable

__all__ = ["api", "operation", "WorkerEntrypoint", "KEPT_FOR_OPERATIONS"]

KEPT_FOR_OPERATIONS = 5  # workers only /health, /ready, /metrics and docs may use


class WorkerEntrypoint(Entrypoint):
    """An entrypoint whose request waits for its worker's answer (`run_worker`)."""

    def run_worker(self, args, context_data, kwargs=None):
        """Run the service method in a worker and return (or raise) what it did."""
        done = Event()
        try:
            self.container.spawn_worker(self, args, kwargs or {}, context_data=context_data,
                                        handle_result=functools.partial(self._done, done))
        except ContainerBeingKilled:
            raise HttpError(503, "service_unavailable", "the gateway is shutting down",
                            headers={"Retry-After": "5"}) from None
        return done.wait()

    @staticmethod
    def _done(event, worker_ctx, result, exc_info):
        event.send(result, exc_info)
        return result, exc_info


class HttpEntrypoint(WorkerEntrypoint):
    server = MeshWebServer()

    def setup(self):
        self.server.register_provider(self)

    def stop(self):
        self.server.unregister_provider(self)
        super().stop()


class Api(HttpEntrypoint):
    """Serves every route of a `RouteTable` through one service method.

    The method is called as ``method(route, kwargs, claims)`` after the caller's
    token, role and arguments have been checked (`claims` is None on a public
    route); `errors` maps exceptions it raises to `(status, code)`.
    """

    def __init__(self, routes, errors, **kwargs):
        kwargs.setdefault("expected_exceptions",
                          (ContractError, UnknownService, RpcTimeout, ServiceUnavailable,
                           HttpError))
        super().__init__(**kwargs)
        self.routes = routes
        self.errors = ErrorTable(errors)

    def setup(self):
        config = self.container.config
        self.tokens = Tokens(signing_key(config), setting(config, "JWT_TTL_SECONDS"))
        self.limits = self.server.rate_limits
        # API requests may fill the worker pool but for a few workers kept for
        # probes, scrapes and docs; one more is answered 503 at once, not queued
        self.slots = Semaphore(max(1, self.container.max_workers - KEPT_FOR_OPERATIONS))
        super().setup()

    def url_rules(self):
        return [Rule(self.routes.url(route), methods=[route.method],
                     endpoint=functools.partial(self.handle, route))
                for route in self.routes]

    def handle(self, route, request, path_values, request_id):
        claims = authenticate(request, route.access, self.tokens)
        self.limits.before_body(route, request, claims)  # bad bodies count too
        kwargs = route.arguments(request, path_values, claims)
        self.limits.after_body(route, request, kwargs)
        context = {"request_id": request_id}
        traceparent = valid_traceparent(request.headers.get("traceparent"))
        if traceparent:  # the client's trace continues through the mesh
            context[TRACEPARENT] = traceparent
        if claims is not None:
            context["user_id"] = claims.user_id
        if not self.slots.acquire(blocking=False):
            raise HttpError(503, "service_unavailable", "the gateway is serving as many "
                            "requests as it can; try again shortly",
                            headers={"Retry-After": "1"})
        try:
            result = self.run_worker((route, kwargs, claims), context)
        except Exception as exc:
            mapped = self.errors.to_http(exc)
            if mapped is None:
                raise
            if mapped.status == 504:
                mapped.message = f"{mapped.message}; {route.timeout_advice}"
            raise mapped from None
        finally:
            self.slots.release()
        if route.status == 204:  # done, nothing to say: no body at all
            return Response(status=204)
        return json_response(result, route.status)


class Operation(HttpEntrypoint):
    """One route answered by a method returning a dict, `(status, dict)`, or a
    werkzeug Response; path values are its keyword arguments."""

    quiet = True  # probes, scrapes and docs: their workers log at DEBUG when they succeed

    def __init__(self, method, path, limited=False, **kwargs):
        """`limited`: counted against the API limit of the caller's address, for
        a route that costs the gateway work (a readiness check)."""
        kwargs.setdefault("expected_exceptions", (HttpError,))
        super().__init__(**kwargs)
        self.method, self.path, self.limited = method, path, limited

    def url_rules(self):
        return [Rule(self.path, methods=[self.method], endpoint=self.handle)]

    def handle(self, request, path_values, request_id):
        if self.limited:
            self.server.rate_limits.anonymous(request)
        result = self.run_worker((), {"request_id": request_id}, path_values)
        if isinstance(result, Response):
            return result
        status, payload = result if isinstance(result, tuple) else (200, result)
        return json_response(payload, status)


api = Api.decorator
operation = Operation.decorator
