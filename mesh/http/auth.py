"""Bearer-token and role checks for gateway routes."""
import time

from cachetools import TTLCache
from nameko.extensions import DependencyProvider

from contracts.errors import NotFound
from mesh.auth.tokens import InvalidToken
from mesh.core.config import setting
from mesh.http.errors import HttpError
from mesh.http.routes import ADMIN, PUBLIC

__all__ = ["authenticate", "verify", "KnownUsers"]


def _unauthorized(message, error=None):
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HttpError(401, "unauthorized", message,
                     headers={"WWW-Authenticate": challenge})


def authenticate(request, access, tokens):
    """The caller's claims, or None on a public route; 401/403 when not allowed."""
    if access == PUBLIC:
        return None
    header = request.headers.get("Authorization", "")
    if not header:
        raise _unauthorized("a bearer token is required")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'",
                            "invalid_request")
    return verify(token.strip(), access, tokens)


def verify(token, access, tokens):
    """The claims of a bearer token however it came (a header, the operator page's
    cookie); 401 when it is not valid, 403 when `access` is ADMIN and it lacks the role."""
    try:
        claims = tokens.verify(token)
    except InvalidToken:
        raise _unauthorized("the token is invalid or expired", "invalid_token") from None
    if access == ADMIN and claims.role != "admin":
        raise HttpError(403, "forbidden", "this needs the admin role")
    return claims


class KnownUsers(DependencyProvider):
    """Refuses a valid token whose user was deleted or disabled since, or that was
    issued before the user's password changed (an older token generation).

    ``self.known_users.require(claims, lookup)``: `lookup()` asks the service that
    owns users for the user's access (`contracts.accounts.Access`) and raises
    NotFound for a user that is gone. An answer is remembered, so most requests
    cost no lookup, until `forget(user_id)`: the gateway calls it on the events
    accounts publishes for such changes, which every gateway instance hears, or
    `forget_everyone()`: the gateway calls it when its event queues were declared
    again after a lost connection (an event may have been missed meanwhile). It
    is also remembered at most USER_CACHE_SECONDS, a backstop.
    """

    MAX_REMEMBERED = 100_000  # users; past it, the least recently seen goes

    def setup(self):
        self.seen = TTLCache(self.MAX_REMEMBERED,
                             setting(self.container.config, "USER_CACHE_SECONDS"),
                             timer=time.monotonic)
        # counts `forget` calls: a lookup that ran across one may have read the
        # user before the change, so its answer is used but not remembered
        self.forgotten = 0

    def get_dependency(self, worker_ctx):
        return self

    def require(self, claims, lookup):
        access = self.seen.get(claims.user_id)
        if access is None:
            before = self.forgotten
            try:
                access = lookup()
            except NotFound:
                self.seen.pop(claims.user_id, None)
                raise _unauthorized("the token's user no longer exists",
                                    "invalid_token") from None
            if self.forgotten == before:
                self.seen[claims.user_id] = access
        if access["status"] != "active":
            raise _unauthorized("the token's user is disabled", "invalid_token")
        if access["token_version"] != claims.version or access["role"] != claims.role:
            raise _unauthorized("the token was revoked (a password change, say): "
                                "log in again", "invalid_token")

    def forget(self, user_id):
        self.forgotten += 1
        self.seen.pop(user_id, None)

    def forget_everyone(self):
        self.forgotten += 1
        self.seen.clear()
