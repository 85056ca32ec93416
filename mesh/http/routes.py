"""The gateway's route table: HTTP method and path → one contract RPC, plus who may call."""
import dataclasses
import functools
import json
import re

from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from contracts.base import Int, ServiceContract
from mesh.http.errors import MAX_BODY_BYTES, HttpError, payload_too_large

__all__ = ["PUBLIC", "USER", "ADMIN", "Route", "RouteTable"]

PUBLIC, USER, ADMIN = "public", "user", "admin"
ACCESS = (PUBLIC, USER, ADMIN)
BODY_METHODS = ("POST", "PUT", "PATCH")
PATH_PARAM = re.compile(r"<(?:[^:<>]+:)?(\w+)>")
INTEGER = re.compile(r"^-?\d{1,18}$")
MAX_DEPTH = 32  # no request of this API nests beyond a few levels
ROUTE_BODY_BYTES = 16 * 1024  # the largest request (50 order lines) is ~3 KiB


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def read_json_object(request, max_bytes=MAX_BODY_BYTES):
    """The request's JSON object body ({} when empty); 413, 415, 400 or 422 otherwise.

    A body over `max_bytes` is refused before it is read or parsed."""
    if (request.content_length or 0) > max_bytes:
        raise payload_too_large(max_bytes)
    request.max_content_length = max_bytes  # a chunked body is cut off there too
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise payload_too_large(max_bytes) from None
    if not raw:
        return {}
    if not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
        raise HttpError(415, "unsupported_media_type",
                        "send the body as JSON with Content-Type: application/json")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise HttpError(400, "malformed_json", "the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and bad UTF-8 alike
        raise HttpError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if _depth(body) > MAX_DEPTH:
        raise HttpError(400, "malformed_json",
                        f"the JSON body is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(body, dict):
        raise HttpError(422, "validation_error", "the body must be a JSON object",
                        {"_schema": ["Expected a JSON object."]})
    return body


def _depth(value):
    """How deeply arrays and objects nest in `value` (iteratively: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in
                         (node.values() if isinstance(node, dict) else node))
    return deepest


@dataclasses.dataclass(frozen=True)
class Route:
    """`method path` calls `contract.rpc` with the path, body or query and identity.

    `identity` maps an RPC argument to a claim of the caller's token, e.g.
    ``{"user_id": "user_id"}`` for "the caller's own" or ``{"user_id": "owner_id"}``
    for "the caller's own, or anyone's for an admin". `headers` maps an RPC argument
    to a request header, e.g. ``{"idempotency_key": "Idempotency-Key"}``.
    `password_work` marks a route whose call hashes or verifies a password: it
    also counts against AUTH_ADDRESS_RATE_LIMIT before its body is read.
    `auth_limit_by` names the argument (a login's email) that keys
    AUTH_RATE_LIMIT (with the client address) and AUTH_ACCOUNT_RATE_LIMIT.
    `changes_access` marks a route after which what a gateway remembers of the
    user named by its `user_id` argument is stale: `call` forgets it.
    """

    method: str
    path: str
    contract: ServiceContract
    rpc: str
    access: str = PUBLIC
    status: int = 200
    identity: dict = dataclasses.field(default_factory=dict)
    headers: dict = dataclasses.field(default_factory=dict)
    password_work: bool = False
    auth_limit_by: str | None = None
    changes_access: bool = False
    max_body: int = ROUTE_BODY_BYTES
    summary: str = ""

    def __post_init__(self):
        if self.access not in ACCESS:
            raise ValueError(f"{self}: access must be one of {ACCESS}")
        self.contract.method(self.rpc)  # undeclared methods fail at import
        fields = set(self.schema._declared_fields)
        missing = (set(self.path_params) | set(self.identity) | set(self.headers) |
                   ({"user_id"} if self.changes_access else set())) - fields
        if missing:
            raise ValueError(f"{self.method} {self.path}: {self.target} takes no "
                             f"argument(s) {sorted(missing)}")

    @property
    def target(self):
        return f"{self.contract.service}.{self.rpc}"

    @property
    def schema(self):
        return self.contract.methods[self.rpc].args

    @functools.cached_property
    def loader(self):
        return self.schema()

    @property
    def path_params(self):
        return PATH_PARAM.findall(self.path)

    @property
    def has_body(self):
        return self.method in BODY_METHODS

    @property
    def timeout_advice(self):
        """What a client told 504 should do: a write the service had started may
        still be applied after the gateway gave up on it."""
        if self.method == "GET":
            return "try again shortly"
        if "idempotency_key" in self.headers:
            return ("it may still be applied: retry with the same Idempotency-Key, "
                    "which returns that result instead of applying it twice")
        return "it may still be applied: check before you retry"

    def call(self, rpcs, kwargs, known_users):
        """Make the route's RPC with `kwargs` through `rpcs` (the gateway's proxies by
        service) and return its result. After one that `changes_access`,
        `known_users` (mesh.http.auth.KnownUsers) forgets the user at once: this
        gateway's next request must not wait for the event saying so to arrive."""
        result = getattr(rpcs[self.contract.service], self.rpc)(**kwargs)
        if self.changes_access:
            known_users.forget(kwargs["user_id"])
        return result

    def supplied_fields(self):
        """The fields a client supplies in the body or query string."""
        return [name for name in self.schema._declared_fields
                if name not in self.path_params and name not in self.identity
                and name not in self.headers]

    def arguments(self, request, path_values, claims):
        """Load the RPC's keyword arguments from the request; HttpError when bad."""
        supplied = read_json_object(request, self.max_body) if self.has_body \
            else self._query(request)
        fixed = dict(path_values)
        fixed.update({arg: getattr(claims, claim) for arg, claim in self.identity.items()})
        fixed.update({arg: request.headers[name] for arg, name in self.headers.items()
                      if name in request.headers})
        clash = set(supplied) & set(fixed)
        if clash:
            raise HttpError(422, "validation_error", "the request has invalid fields",
                            {name: ["Unknown field."] for name in sorted(clash)})
        try:
            return self.loader.load({**supplied, **fixed})
        except ValidationError as exc:
            raise HttpError(422, "validation_error", "the request has invalid fields",
                            exc.normalized_messages()) from None

    def _query(self, request):
        if not request.environ.get("QUERY_STRING"):
            return {}  # most reads: werkzeug's parsing of nothing is not free
        query = request.args.to_dict(flat=True)
        for name, value in query.items():
            if isinstance(self.loader.fields.get(name), Int) and INTEGER.match(value):
                query[name] = int(value)
        return query


class RouteTable:
    """Routes under one prefix; knows the contracts they call."""

    def __init__(self, prefix, routes):
        self.prefix = prefix.rstrip("/")
        self.routes = list(routes)
        seen = set()
        for route in self.routes:
            key = (route.method, route.path)
            if key in seen:
                raise ValueError(f"route {route.method} {route.path} is declared twice")
            seen.add(key)

    def __iter__(self):
        return iter(self.routes)

    def url(self, route):
        return self.prefix + route.path

    @property
    def contracts(self):
        return {route.contract.service: route.contract for route in self.routes}

    @property
    def calls(self):
        """`{service: {method, ...}}`: the RPCs the routes make."""
        found = {}
        for route in self.routes:
            found.setdefault(route.contract.service, set()).add(route.rpc)
        return found
