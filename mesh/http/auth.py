"""Bearer-token and role checks for gateway routes."""
from mesh.http.errors import HttpError
from mesh.http.routes import ADMIN, PUBLIC
from mesh.tokens import InvalidToken

__all__ = ["authenticate"]


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
