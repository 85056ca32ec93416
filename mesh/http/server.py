"""The gateway's web server: JSON errors, request ids, bounded connections and time,
and a stop that never hangs."""
import collections
import errno
import functools
import logging
import re
import socket
import time
import uuid

import eventlet
from eventlet.semaphore import Semaphore

from nameko.web.server import BindAddress, WebServer
from prometheus_client import Histogram
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, \
    RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import Map
from werkzeug.wrappers import Request, Response

from mesh.core.config import setting
from mesh.http.errors import MAX_BODY_BYTES, HttpError, internal_error, \
    payload_too_large
from mesh.core.metrics import LATENCY_BUCKETS, Metrics

__all__ = ["MeshWebServer", "request_id_from", "accept_forever"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("mesh.http.access")
# probes and scrapes: answered often, logged only at DEBUG when they succeed
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
UNMATCHED = "(unmatched)"
# any other method is counted as "other": a client must not mint label values
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
# the process or the machine is out of a resource for a moment: wait, do not die
ACCEPT_PAUSES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_PAUSE_SECONDS = 0.1
_TOO_MANY_BODY = (b'{"error": {"code": "service_unavailable", '
                  b'"message": "too many connections; try again shortly"}}')
TOO_MANY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(_TOO_MANY_BODY), _TOO_MANY_BODY))


def accept_forever(listener, serve, slots, spawn=eventlet.spawn_n, accepting=lambda: True):
    """Accept connections and hand each to `serve(sock, address)` in a greenthread
    of its own (`spawn`), while `slots` (a semaphore) has room: beyond it a connection is
    answered 503 and closed. Running out of file descriptors (EMFILE) or memory
    pauses accepting for a moment; it never ends the loop."""
    while accepting():
        try:
            sock, address = listener.accept()
        except OSError as exc:
            if exc.errno == errno.ECONNABORTED:  # the client gave up first
                continue
            if exc.errno not in ACCEPT_PAUSES:
                raise
            log.warning("cannot accept a connection (%s); pausing", exc.strerror)
            eventlet.sleep(ACCEPT_PAUSE_SECONDS)
            continue
        if not slots.acquire(blocking=False):
            try:
                sock.sendall(TOO_MANY)
            except OSError:
                pass
            sock.close()
            continue

        def handle(sock=sock, address=address):
            try:
                serve(sock, address)
            finally:
                slots.release()
        spawn(handle)


def request_id_from(header):
    """The client's X-Request-ID when it is safe to echo and log, else a new one."""
    if header and SAFE_REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def asks_for_websocket(environ):
    """A WebSocket handshake, as werkzeug's `bind_to_environ` tells one: no route
    takes it (werkzeug's WebsocketMismatch, a 400)."""
    upgrade = any(value.strip(" \t") == "upgrade"
                  for value in environ.get("HTTP_CONNECTION", "").lower().split(","))
    return upgrade and environ.get("HTTP_UPGRADE", "").lower() == "websocket"


HttpMetrics = collections.namedtuple("HttpMetrics", "requests latency rate_limited")


class MeshWsgiApp:
    def __init__(self, server):
        # bound once: its rules never redirect (no strict slashes) nor match on the
        # host, so binding to each request's environ made the same adapter anew
        # (but for a WebSocket handshake: `asks_for_websocket`)
        self.urls = server.make_url_map().bind("gateway")
        self.cors = Cors(server.container.config.get("CORS_ORIGINS"))
        self.metrics, self.service = server.http_metrics, server.metrics.service

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        request_id = request_id_from(request.headers.get("X-Request-ID"))
        try:
            response = self.cors.preflight(request, self.urls) or \
                self.dispatch(request, request_id)
        except HttpError as exc:
            response = exc.response(request_id)
        except Exception as exc:
            response = internal_error(exc, request_id).response(request_id)
        response.headers["X-Request-ID"] = request_id
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        self.cors.decorate(request, response)
        self.record(request, response, request_id, time.perf_counter() - started)
        return response(environ, start_response)

    def record(self, request, response, request_id, seconds):
        """The access log line and the request metrics."""
        route = request.environ.get("mesh.route", UNMATCHED)
        method = request.method if request.method in METHODS else "other"
        self.metrics.requests.labels(self.service, route, method,
                                     str(response.status_code)).inc()
        self.metrics.latency.labels(self.service, route, method).observe(seconds)
        quiet = request.path in QUIET_PATHS and response.status_code < 400
        access_log.log(
            logging.DEBUG if quiet else logging.INFO, "%s %s %d in %.1f ms",
            request.method, request.path, response.status_code, seconds * 1000,
            extra={"request_id": request_id, "method": request.method, "route": route,
                   "status": response.status_code, "duration_ms": round(seconds * 1000, 3)})

    def dispatch(self, request, request_id):
        try:
            rule, values = self.urls.match(request.path, request.method, return_rule=True,
                                           websocket=asks_for_websocket(request.environ))
        except NotFound:
            raise HttpError(404, "not_found", f"no route for {request.path}") from None
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            raise HttpError(405, "method_not_allowed",
                            f"{request.method} is not allowed on {request.path}",
                            headers={"Allow": allowed}) from None
        except HTTPException as exc:  # e.g. a redirect werkzeug would answer in HTML
            raise HttpError(exc.code or 400, "not_found" if exc.code == 404 else "bad_request",
                            exc.description or "bad request") from None
        request.environ["mesh.route"] = rule.rule
        handler = rule.endpoint
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise payload_too_large()
        try:
            return handler(request, values, request_id)
        except RequestEntityTooLarge:
            raise payload_too_large() from None


class Cors:
    """Cross-origin access for the listed origins only; off when none are listed."""

    ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-ID"
    EXPOSE_HEADERS = "X-Request-ID, Retry-After, WWW-Authenticate"

    def __init__(self, origins):
        self.origins = {o.strip() for o in (origins or "").split(",") if o.strip()}

    def _allowed(self, request):
        origin = request.headers.get("Origin")
        return origin if origin in self.origins else None

    def preflight(self, request, urls):
        """A 204 answering a browser's preflight, or None for any other request."""
        if request.method != "OPTIONS" or not self._allowed(request) or \
                "Access-Control-Request-Method" not in request.headers:
            return None
        try:
            urls.match(request.path, method="__none__")
        except MethodNotAllowed as exc:
            methods = ", ".join(sorted(set(exc.valid_methods or ()) - {"OPTIONS"}))
        except HTTPException:
            return None  # an unknown path: the usual 404
        response = Response(status=204)
        response.headers.update({"Access-Control-Allow-Methods": methods,
                                 "Access-Control-Allow-Headers": self.ALLOW_HEADERS,
                                 "Access-Control-Max-Age": "600"})
        return response

    def decorate(self, request, response):
        origin = self._allowed(request)
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = self.EXPOSE_HEADERS
            response.headers.add("Vary", "Origin")


class MeshWebServer(WebServer):
    """nameko's WebServer bound to GATEWAY_HOST:GATEWAY_PORT, answering JSON only.

    Each provider offers `url_rules()`: werkzeug Rules whose endpoint is a
    callable `(request, path_values, request_id) -> Response`.
    """

    metrics = Metrics()

    def __init__(self):
        super().__init__()
        self._connections = set()

    @functools.cached_property
    def http_metrics(self):
        # built on first use: the entrypoints ask for it in their own setup; each
        # labelled service first, as every series is
        return HttpMetrics(
            self.metrics.counter("mesh_http_requests", "HTTP requests by route, method "
                                 "and status", ["route", "method", "status"]),
            Histogram("mesh_http_request_duration_seconds", "Time to answer an HTTP "
                      "request", ["service", "route", "method"], buckets=LATENCY_BUCKETS,
                      registry=self.metrics.registry),
            self.metrics.counter("mesh_http_rate_limited", "Requests refused by a rate "
                                 "limit (api or auth)", ["limit"]))

    @functools.cached_property
    def rate_limits(self):
        """The gateway's limits, one for every route it serves: an address's API
        requests and its probes count together, in memory or in REDIS_URL."""
        from mesh.http.limits import RateLimits

        refused, service = self.http_metrics.rate_limited, self.metrics.service
        return RateLimits.from_config(self.container.config,
                                      lambda limit: refused.labels(service, limit).inc())

    @property
    def bind_addr(self):
        config = self.container.config
        return BindAddress(config["GATEWAY_HOST"], int(config["GATEWAY_PORT"]))

    def get_wsgi_app(self):
        app = MeshWsgiApp(self)
        hops = setting(self.container.config, "TRUSTED_PROXIES")
        # behind a load balancer every client has its address; trust the
        # X-Forwarded-For/-Proto entries its `hops` proxies added, and no more
        # (a client can write any it likes before them)
        return ProxyFix(app, x_for=hops, x_proto=hops, x_host=0, x_port=0,
                        x_prefix=0) if hops else app

    def make_url_map(self):
        url_map = Map(strict_slashes=False, merge_slashes=False)
        for provider in self._providers:
            for rule in provider.url_rules():
                url_map.add(rule)
        return url_map

    def get_wsgi_server(self, sock, wsgi_app, **kwargs):
        server = super().get_wsgi_server(sock, wsgi_app, **kwargs)
        config = self.container.config
        # a client may not hold a connection by sending slowly, or by idling
        server.socket_timeout = setting(config, "HTTP_READ_TIMEOUT")
        server.keepalive = setting(config, "HTTP_IDLE_TIMEOUT")
        # eventlet's own access line: `record` writes the gateway's; eventlet's was
        # formatted for every request, then dropped by its logger's level (1.5-2%
        # of the gateway's profile samples). Its errors still reach `server.log`.
        server.log_output = False
        return server

    def run(self):
        # nameko's accept loop would die on EMFILE (and the container with it),
        # and takes any number of connections
        slots = Semaphore(setting(self.container.config, "HTTP_MAX_CONNECTIONS"))
        accept_forever(self._sock, self._serve, slots, self.container.spawn_managed_thread,
                       lambda: self._is_accepting)

    def _serve(self, sock, address):
        sock.settimeout(self._serv.socket_timeout)
        self.process_request(sock, address)

    def process_request(self, sock, address):
        self._connections.add(sock)
        try:
            super().process_request(sock, address)
        except OSError as exc:  # a client gone mid-request, or too slow
            log.debug("connection from %s ended: %s", address, exc)
        finally:
            self._connections.discard(sock)
            sock.close()

    def stop(self):
        # Keep-alive connections would keep their greenthreads reading forever;
        # shutting their read side lets in-flight responses finish, then close.
        for sock in list(self._connections):
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        super().stop()
