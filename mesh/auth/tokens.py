"""Signed, expiring bearer tokens (PyJWT, HS256) and the key they are signed with."""
import collections
import dataclasses
import time

import jwt
from nameko.extensions import DependencyProvider

from mesh.core.config import setting
from mesh.core.secrets import kept_secret

__all__ = ["ALGORITHM", "Claims", "InvalidToken", "Tokens", "TokenKeys", "signing_key"]

ALGORITHM = "HS256"
SECRET_FILE = "jwt_secret"
VERIFIED_KEPT = 10_000  # tokens a process remembers having verified, the latest used


class InvalidToken(Exception):
    """Missing, malformed, forged, altered or expired."""


@dataclasses.dataclass(frozen=True)
class Claims:
    user_id: int
    role: str
    # the user's token generation when it was issued (0 in tokens older than it)
    version: int = 0

    @property
    def owner_id(self):
        """Whose things the caller may see: their own, or anyone's (None) for an admin."""
        return None if self.role == "admin" else self.user_id


def signing_key(config):
    """JWT_SECRET, else a development secret made once and kept in MESH_DATA_DIR
    (see `mesh.core.secrets.kept_secret`)."""
    if config.get("JWT_SECRET"):
        return config["JWT_SECRET"]
    return kept_secret(config["MESH_DATA_DIR"], SECRET_FILE)


class Tokens:
    """Issues and verifies tokens with one key; plain object, testable alone."""

    def __init__(self, key, ttl=3600):
        self.key = key
        self.ttl = ttl
        # a gateway sees the same bearers on request after request, and checking a
        # signature and its claims again each time was a tenth of its CPU (docs
        # "Performance"): what a token says is remembered until its own exp, which
        # is all a check of it could say. Revocation is KnownUsers' (the token's
        # generation), asked on every request as before.
        self._verified = collections.OrderedDict()  # token → (Claims, exp)

    def issue(self, user_id, role, version=0, now=None):
        now = int(time.time() if now is None else now)
        claims = {"sub": str(user_id), "role": role, "ver": version, "iat": now,
                  "exp": now + self.ttl}
        return jwt.encode(claims, self.key, algorithm=ALGORITHM)

    def verify(self, token):
        """The token's claims; InvalidToken for anything but a good, live token."""
        known = self._verified.get(token)
        if known is not None and time.time() < known[1]:
            self._verified.move_to_end(token)
            return known[0]
        self._verified.pop(token, None)
        try:
            claims = jwt.decode(token, self.key, algorithms=[ALGORITHM],
                                options={"require": ["sub", "role", "iat", "exp"]})
            version = claims.get("ver", 0)
            if type(version) is not int:
                raise InvalidToken("the token's ver is not an integer")
            verified = Claims(user_id=int(claims["sub"]), role=str(claims["role"]),
                              version=version)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(str(exc)) from None
        self._verified[token] = (verified, claims["exp"])
        if len(self._verified) > VERIFIED_KEPT:
            self._verified.popitem(last=False)
        return verified


class TokenKeys(DependencyProvider):
    """Gives workers a `Tokens` signed with the mesh's key (see `signing_key`)."""

    def setup(self):
        config = self.container.config
        self.tokens = Tokens(signing_key(config), setting(config, "JWT_TTL_SECONDS"))

    def get_dependency(self, worker_ctx):
        return self.tokens
