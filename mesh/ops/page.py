"""The operator page: `@operator_page` serves /ops on the gateway's operations
port (OPS_PORTS["gateway"], through `OpsServer.add_page`), never on the public
one, to admins only.

Logging in is pasting an admin's bearer token (from `POST /api/v1/auth/token` on
the public API) into /ops/login, which keeps it in an HttpOnly, SameSite=Strict
cookie for /ops. The ops port so takes no password: no second place to guess
one, or to make accounts hash one, outside the public port's login limits.
`Authorization: Bearer TOKEN` works too (curl). Each request's token passes the
checks of the public admin routes: signature, expiry and role here, then, in a
worker of the decorated method (which calls the gateway's `KnownUsers`), a user
still there, enabled, with that token generation.

Routes: GET /ops (the page; `?trace=REQUEST_ID` or `?order=ORDER_ID` adds a
trace), GET and POST /ops/login, POST /ops/logout, GET /ops/page.js and
/ops/page.css. The page changes nothing; its two forms are refused from another
origin (and the cookie is never sent from one).
"""
import functools
import importlib.resources
import logging
from urllib.parse import urlsplit

from nameko.exceptions import RpcTimeout, UnknownService
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from mesh.auth.tokens import Tokens, signing_key
from mesh.core.config import setting
from mesh.core.metrics import OpsServer
from mesh.http.auth import authenticate, verify
from mesh.http.entrypoints import WorkerEntrypoint
from mesh.http.errors import ErrorTable, HttpError, internal_error
from mesh.http.routes import ADMIN
from mesh.http.server import SECURITY_HEADERS, request_id_from
from mesh.messaging.guard import ServiceUnavailable
from mesh.messaging.rpc import ServiceRpc
from mesh.ops import page_state, page_view
from mesh.ops.page_view import PREFIX

__all__ = ["operator_page", "OperatorPage", "PageApp", "COOKIE"]

log = logging.getLogger(__name__)
COOKIE = "mesh_ops_token"
MAX_LOGIN_BYTES = 16 * 1024  # a token is well under 1 KiB
HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    # a page's URL may hold a request id: never sent elsewhere (not no-referrer,
    # with which a browser sends `Origin: null`, and the login would be refused)
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
ASSETS = {"page.js": "text/javascript; charset=utf-8",
          "page.css": "text/css; charset=utf-8"}
PLATFORM = ErrorTable({})  # a service (accounts) that cannot answer: 503 or 504


def _text(status, message, headers=None):
    return Response(f"{status} {message}\n", status=status, headers=headers,
                    content_type="text/plain; charset=utf-8")


def _html(body, status=200):
    return Response(body, status=status, content_type="text/html; charset=utf-8")


class PageApp:
    """The WSGI app of /ops. `check(claims, request_id)` raises HttpError for a
    caller the gateway no longer accepts (the `KnownUsers` check);
    `collect(query)` reads the page's parts (`page_state.collect`)."""

    def __init__(self, tokens, check, collect, cookie_seconds):
        self.tokens, self.check, self.collect = tokens, check, collect
        self.cookie_seconds = cookie_seconds
        self.url_map = Map([
            Rule(PREFIX, methods=["GET"], endpoint=self.page),
            Rule(f"{PREFIX}/login", methods=["GET"], endpoint=self.login_form),
            Rule(f"{PREFIX}/login", methods=["POST"], endpoint=self.log_in),
            Rule(f"{PREFIX}/logout", methods=["POST"], endpoint=self.log_out),
            *(Rule(f"{PREFIX}/{name}", methods=["GET"], endpoint=self.asset,
                   defaults={"name": name}) for name in ASSETS),
        ], strict_slashes=False, merge_slashes=False)

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_LOGIN_BYTES
        request_id = request_id_from(request.headers.get("X-Request-ID"))
        try:
            response = self.dispatch(request, request_id)
        except HttpError as exc:
            response = self.refusal(request, exc)
        except HTTPException as exc:  # werkzeug's: a login body over MAX_LOGIN_BYTES
            response = _text(exc.code or 400, exc.name)
        except Exception as exc:
            response = self.refusal(request, internal_error(exc, request_id))
        response.headers["X-Request-ID"] = request_id
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response(environ, start_response)

    def dispatch(self, request, request_id):
        try:
            endpoint, values = self.url_map.bind_to_environ(request.environ).match()
        except NotFound:
            return _text(404, "Not Found")
        except MethodNotAllowed as exc:
            return _text(405, "Method Not Allowed",
                         {"Allow": ", ".join(sorted(exc.valid_methods or ()))})
        return endpoint(request, request_id, **values)

    def refusal(self, request, exc):
        """A browser without a good token goes to the login form; anyone else is
        told in one plain line (a 401 with its Bearer challenge)."""
        if exc.status == 401 and "Authorization" not in request.headers and \
                "text/html" in request.headers.get("Accept", ""):
            response = redirect(f"{PREFIX}/login", 303)
            if COOKIE in request.cookies:
                self._forget(response)
            return response
        return _text(exc.status, exc.message, exc.headers)

    def caller(self, request, request_id):
        """The admin's claims from the Authorization header, else the cookie."""
        if "Authorization" in request.headers:
            claims = authenticate(request, ADMIN, self.tokens)
        else:
            token = request.cookies.get(COOKIE)
            if not token:
                raise HttpError(401, "unauthorized", "log in at /ops/login, or send "
                                "a bearer token", headers={"WWW-Authenticate": "Bearer"})
            claims = verify(token, ADMIN, self.tokens)
        self.check(claims, request_id)
        return claims

    def page(self, request, request_id):
        claims = self.caller(request, request_id)
        query = page_state.query_of(request.args)
        typed = (request.args.get("trace"), request.args.get("order"))
        return _html(page_view.page(self.collect(query), typed, claims))

    def login_form(self, request, request_id):
        return _html(page_view.login())

    @staticmethod
    def _same_origin(request):
        # a browser names the origin of every POST; curl sends none, and needs none.
        # The host alone is compared: a TLS proxy in front changes the scheme.
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise HttpError(403, "forbidden", "a form sent from another origin is refused")

    def log_in(self, request, request_id):
        self._same_origin(request)
        token = request.form.get("token", "").strip()
        try:
            if not token:
                raise HttpError(401, "unauthorized", "paste a bearer token")
            claims = verify(token, ADMIN, self.tokens)
            self.check(claims, request_id)
        except HttpError as exc:
            if exc.status != 401:
                raise
            return _html(page_view.login(exc.message), 401)
        log.info("operator page: user %s logged in", claims.user_id,
                 extra={"request_id": request_id})
        response = redirect(PREFIX, 303)
        # Secure behind a TLS proxy too: a spoofed header only makes it stricter
        secure = request.is_secure or request.headers.get("X-Forwarded-Proto") == "https"
        response.set_cookie(COOKIE, token, max_age=self.cookie_seconds, path=PREFIX,
                            secure=secure, httponly=True, samesite="Strict")
        return response

    def log_out(self, request, request_id):
        self._same_origin(request)
        response = redirect(f"{PREFIX}/login", 303)
        self._forget(response)
        return response

    @staticmethod
    def _forget(response):
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="Strict")

    @staticmethod
    @functools.cache
    def _asset(name):
        return importlib.resources.files(__package__).joinpath(name).read_bytes()

    def asset(self, request, request_id, name):
        return Response(self._asset(name), content_type=ASSETS[name])


class OperatorPage(WorkerEntrypoint):
    """Serves /ops on the service's ops port; the decorated method is called as
    ``method(claims)`` for each request's caller, and raises HttpError (401)
    for one the service no longer accepts.

    Its circuits are those of the service's `ServiceRpc`s, read, never changed.
    """

    ops = OpsServer()
    quiet = True  # an answered page logs at DEBUG (mesh.runtime.telemetry)

    def __init__(self, **kwargs):
        kwargs.setdefault("expected_exceptions",
                          (HttpError, ServiceUnavailable, RpcTimeout, UnknownService))
        super().__init__(**kwargs)

    def setup(self):
        config = self.container.config
        tokens = Tokens(signing_key(config), setting(config, "JWT_TTL_SECONDS"))
        self.ops.add_page(PREFIX, PageApp(tokens, self.check, self.collect,
                                          setting(config, "JWT_TTL_SECONDS")))

    def check(self, claims, request_id):
        try:
            self.run_worker((claims,), {"request_id": request_id,
                                        "user_id": claims.user_id})
        except HttpError:
            raise
        except Exception as exc:  # accounts away: 503, not a way in
            mapped = PLATFORM.to_http(exc)
            if mapped is None:
                raise
            raise mapped from None

    def guards(self):
        return {name: guard for dependency in self.container.dependencies
                if isinstance(dependency, ServiceRpc)
                for name, guard in dependency.guards.items()}

    def collect(self, query):
        return page_state.collect(self.container.config, self.guards(), query)


operator_page = OperatorPage.decorator
