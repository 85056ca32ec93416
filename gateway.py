"""The HTTP entry point: a route table from HTTP to contract RPCs, nothing else."""
from werkzeug.wrappers import Response

import contracts
from contracts import accounts, inventory, notifications, orders
from contracts.errors import Busy, Conflict, InvalidCredentials, InvalidInput, NotFound
from mesh.http import ADMIN, USER, HttpError, Route, RouteTable, api, operation
from mesh.http.auth import KnownUsers
from mesh.http.openapi import OpenApi, docs_asset, docs_page
from mesh.messaging.broadcasts import hear_event
from mesh.messaging.health import Readiness
from mesh.messaging.rpc import ServiceRpcs
from mesh.ops.page import operator_page
from mesh.runtime.asyncapi import AsyncApi, events_page
from mesh.runtime.telemetry import Telemetry

ROUTES = RouteTable("/api/v1", [
    Route("POST", "/auth/register", accounts.CONTRACT, "register", status=201,
          password_work=True, summary="Register a customer"),
    Route("POST", "/auth/token", accounts.CONTRACT, "issue_token", password_work=True,
          auth_limit_by="email", summary="Exchange email and password for a bearer token"),
    Route("GET", "/me", accounts.CONTRACT, "get_user", access=USER,
          identity={"user_id": "user_id"}, summary="The caller's own user"),
    Route("POST", "/me/password", accounts.CONTRACT, "change_password", access=USER,
          status=204, identity={"user_id": "user_id"}, password_work=True,
          changes_access=True,
          summary="Change the caller's password; older tokens stop working"),
    Route("POST", "/users/<int:user_id>/disable", accounts.CONTRACT, "disable_user",
          access=ADMIN, identity={"actor_id": "user_id"},
          changes_access=True,
          summary="Disable a user: their tokens and logins stop working"),
    Route("POST", "/users/<int:user_id>/enable", accounts.CONTRACT, "enable_user",
          access=ADMIN, identity={"actor_id": "user_id"},
          changes_access=True,
          summary="Enable a disabled user again"),
    Route("DELETE", "/users/<int:user_id>", accounts.CONTRACT, "delete_user",
          access=ADMIN, status=204, identity={"actor_id": "user_id"},
          changes_access=True,
          summary="Delete a user (their orders and payments are kept)"),
    Route("GET", "/products", inventory.CONTRACT, "list_products",
          summary="A page of products"),
    Route("GET", "/products/<int:product_id>", inventory.CONTRACT, "get_product",
          summary="One product"),
    Route("POST", "/products", inventory.CONTRACT, "create_product", access=ADMIN,
          status=201, summary="Add a product"),
    Route("POST", "/products/<int:product_id>/restock", inventory.CONTRACT, "restock",
          access=ADMIN, summary="Add units to a product's stock"),
    Route("POST", "/orders", orders.CONTRACT, "create_order", access=USER, status=202,
          identity={"user_id": "user_id"},
          headers={"idempotency_key": "Idempotency-Key"}, summary="Place an order"),
    Route("GET", "/orders", orders.CONTRACT, "list_orders", access=USER,
          identity={"user_id": "user_id"}, summary="The caller's orders, newest first"),
    Route("GET", "/orders/<int:order_id>", orders.CONTRACT, "get_order", access=USER,
          identity={"user_id": "owner_id"}, summary="One order (owner or admin)"),
    Route("POST", "/orders/<int:order_id>/cancel", orders.CONTRACT, "cancel_order",
          access=USER, status=202, identity={"user_id": "owner_id"},
          summary="Cancel a confirmed order (owner or admin)"),
    Route("GET", "/notifications", notifications.CONTRACT, "list_notifications",
          access=USER, identity={"user_id": "user_id"},
          summary="The caller's notifications, newest first"),
])

# A contract error's HTTP status; its code is the one its class declares, and a
# subclass (NotCancellable is a Conflict) answers with its own code.
ERRORS = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 422,
    InvalidCredentials: 401,
    Busy: 503,
}


class GatewayService:
    name = "gateway"

    telemetry = Telemetry()
    # the routes' RPCs and the token check: all its broker identity may publish
    rpc = ServiceRpcs(ROUTES.contracts, methods=ROUTES.calls | {
        "accounts": ROUTES.calls["accounts"] | {"get_access"}})
    readiness = Readiness()
    known_users = KnownUsers()
    openapi_document = OpenApi(ROUTES, ERRORS)
    asyncapi_document = AsyncApi(contracts.CONTRACTS)

    @api(ROUTES, ERRORS)
    def api(self, route, kwargs, caller):
        if caller is not None:
            self._still_allowed(caller)
        return route.call(self.rpc, kwargs, self.known_users)

    # /ops on the ops port, never the public one: an admin's view of the mesh
    @operator_page
    def operator(self, caller):
        self._still_allowed(caller)

    def _still_allowed(self, caller):
        """The token's user still exists, is enabled, and has not had its tokens
        revoked since (what KnownUsers remembers, else accounts says)."""
        self.known_users.require(caller, lambda: self.rpc["accounts"].get_access(
            user_id=caller.user_id))

    # every gateway instance hears these: what it remembers of the user is stale
    @hear_event(accounts.CONTRACT, "password_changed")
    @hear_event(accounts.CONTRACT, "user_disabled")
    @hear_event(accounts.CONTRACT, "user_enabled")
    @hear_event(accounts.CONTRACT, "user_deleted")
    def forget_user(self, event):
        if event is None:  # reconnected: such an event may have been missed
            self.known_users.forget_everyone()
        else:
            self.known_users.forget(event["data"]["user_id"])

    @operation("GET", "/health")
    def health(self):
        return {"status": "ok"}

    @operation("GET", "/api/v1/openapi.json")
    def openapi(self):
        return self.openapi_document

    @operation("GET", "/api/v1/asyncapi.json")
    def asyncapi(self):
        return self.asyncapi_document

    @operation("GET", "/docs/events")
    def events_docs(self):
        return Response(events_page(self.asyncapi_document),
                        content_type="text/html; charset=utf-8")

    @operation("GET", "/docs")
    def docs(self):
        return docs_page("nameko-mesh API")

    @operation("GET", "/docs/<name>")
    def docs_file(self, name):
        found = docs_asset(name, "/api/v1/openapi.json")
        if found is None:
            raise HttpError(404, "not_found", f"no such file {name}")
        return found

    @operation("GET", "/ready", limited=True)
    def ready(self):
        ready, checks = self.readiness()
        return (200 if ready else 503), {"status": "ready" if ready else "not_ready",
                                         "checks": checks}
