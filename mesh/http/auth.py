"""Bearer-token and role checks for gateway routes."""
import time

from nameko.extensions import DependencyProvider

from contracts.errors import NotFound
from mesh.auth.tokens import InvalidToken
from mesh.http.errors import HttpError
from mesh.http.routes import ADMIN, PUBLIC

__all__ = ["authenticate", "KnownUsers"]


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
    try:
        claims = tokens.verify(token.strip())
    except InvalidToken:
        raise _unauthorized("the token is invalid or expired", "invalid_token") from None
    if access == ADMIN and claims.role != "admin":
        raise HttpError(403, "forbidden", "this needs the admin role")
    return claims


class KnownUsers(DependencyProvider):
    """Refuses a valid token whose user no longer exists.

    ``self.known_users.require(user_id, lookup)``: `lookup()` asks the service
    that owns users and raises NotFound for an unknown one. A user found is
    remembered for `ttl` seconds, so most requests cost no lookup; a deleted
    user's tokens stop working within `ttl`.
    """

    def __init__(self, ttl=60.0):
        self.ttl = ttl
        self.seen = {}

    def get_dependency(self, worker_ctx):
        return self

    def require(self, user_id, lookup):
        if self.seen.get(user_id, 0) > time.monotonic():
            return
        try:
            lookup()
        except NotFound:
            self.seen.pop(user_id, None)
            raise _unauthorized("the token's user no longer exists",
                                "invalid_token") from None
        self.seen[user_id] = time.monotonic() + self.ttl
