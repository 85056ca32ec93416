"""Rate limits for gateway routes (the `limits` library): in memory, or shared in Redis.

Every route is limited by API_RATE_LIMIT per user, or per client address when
anonymous; a route with `auth_limit_by` instead by AUTH_RATE_LIMIT per client
address and that argument (the email of a login), so one client guessing one
account's password is slowed while other accounts from the same address are not.
The client address is the TCP peer's: the gateway trusts no forwarding header.
"""
import math
import time

import limits
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from mesh.config import parse_rate
from mesh.http.errors import HttpError

__all__ = ["RateLimits"]


def _item(text):
    count, seconds = parse_rate(text)
    return limits.RateLimitItemPerSecond(count, seconds)


class RateLimits:
    """Checks and counts one request against its route's limit."""

    def __init__(self, api, auth, storage_url="memory://", prefix="mesh", rejected=None):
        self.api, self.auth = _item(api), _item(auth)
        self.rejected = rejected  # a prometheus Counter labelled by limit, or None
        options = {"key_prefix": prefix} if storage_url.startswith("redis") else {}
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_url, **options))

    @classmethod
    def from_config(cls, config, rejected=None):
        return cls(config.get("API_RATE_LIMIT", "1200/60"),
                   config.get("AUTH_RATE_LIMIT", "10/60"),
                   config.get("REDIS_URL") or "memory://",
                   config.get("RATE_LIMIT_PREFIX") or "mesh", rejected)

    def check(self, route, request, claims, kwargs=None):
        """Count this request; HttpError 429 with Retry-After when over the limit."""
        address = request.remote_addr or "unknown"
        if route.auth_limit_by:
            item = self.auth
            key = ("auth", address, str((kwargs or {}).get(route.auth_limit_by, "")).lower())
        else:
            item = self.api
            key = ("api", f"user:{claims.user_id}" if claims else f"addr:{address}")
        if self.limiter.hit(item, *key):
            return
        if self.rejected is not None:
            self.rejected.labels(key[0]).inc()
        reset_at = self.limiter.get_window_stats(item, *key).reset_time
        wait = max(1, math.ceil(reset_at - time.time()))
        raise HttpError(429, "rate_limited", f"too many requests; try again in {wait} s",
                        headers={"Retry-After": str(wait)})
