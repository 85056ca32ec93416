"""Rate limits for gateway routes (the `limits` library): in memory, or shared in Redis.

Before a request's body is read, every route counts against API_RATE_LIMIT per user,
or per client address when anonymous, and a route that makes a service hash or
verify a password (`password_work`) also against AUTH_ADDRESS_RATE_LIMIT per
client address, whatever the email: a client spraying emails is stopped before
any argon2 work. Once a login's email is known (`auth_limit_by`, normalised by
the contract exactly as accounts looks it up), it counts against AUTH_RATE_LIMIT
per address and email (one client guessing one account is slowed, other accounts
from that address are not) and AUTH_ACCOUNT_RATE_LIMIT per email from any address.
The client address is the TCP peer's, or, with TRUSTED_PROXIES set, the one the
last trusted proxy put in X-Forwarded-For (Werkzeug's ProxyFix, in the server).

When the counters' store (Redis) cannot answer within a second, RATE_LIMIT_ON_ERROR
decides: `closed` (the default) answers 503 with Retry-After, `open` lets the
request through uncounted and logs it.
"""
import logging
import math
import time

import limits
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from mesh.core.config import parse_rate, setting
from mesh.http.errors import HttpError

__all__ = ["RateLimits", "PacedMemoryStore"]

log = logging.getLogger(__name__)
STORE_TIMEOUT = 1.0  # seconds Redis may take to connect or answer
EXPIRY_SECONDS = 1.0  # how often the in-memory store drops counts past their window


def _address(request):
    return request.remote_addr or "unknown"


def _item(text):
    count, seconds = parse_rate(text)
    return limits.RateLimitItemPerSecond(count, seconds)


class PacedMemoryStore(MemoryStorage):
    """limits' in-memory store, its old entries dropped at most once a second, by the
    request that finds the time due.

    limits drops them from a `threading.Timer` it starts again, 10 ms later, on any
    hit that finds the last one finished: under eventlet a green thread to create,
    start (a switch there and back) and run a hundred times a second. At 600
    requests/s that was 6% of the gateway's CPU (see the performance docs). Counting
    is limits' own; only when expiry runs changes, by overriding the private hook its
    every hit calls (the pinned version's; `test_rate_limits` fails if it moves). A
    pass costs about 2 µs per key held; a gateway that sees many thousands of
    clients a minute should count in Redis (REDIS_URL) anyway."""

    def __init__(self):
        super().__init__()
        self._expiry_due = 0.0

    def _MemoryStorage__schedule_expiry(self):
        now = time.monotonic()
        if now >= self._expiry_due:
            self._expiry_due = now + EXPIRY_SECONDS
            self._MemoryStorage__expire_events()
            # limits leaves each expired key's empty list behind: one per client
            # address, user and email ever seen; nothing yields while this runs
            for key in [key for key, entries in self.events.items() if not entries]:
                del self.events[key]


class RateLimits:
    """Checks and counts one request against the limits of its route."""

    def __init__(self, api, auth, storage_url="memory://", prefix="mesh", rejected=None,
                 auth_account=None, auth_address=None, on_error="closed"):
        auth_account = auth_account or setting({}, "AUTH_ACCOUNT_RATE_LIMIT")
        auth_address = auth_address or setting({}, "AUTH_ADDRESS_RATE_LIMIT")
        self.items = {"api": _item(api), "auth": _item(auth),
                      "auth_account": _item(auth_account),
                      "auth_address": _item(auth_address)}
        self.rejected = rejected  # called with the limit's name for each refusal, or None
        self.fail_open = on_error == "open"
        options = {"key_prefix": prefix, "wrap_exceptions": True,
                   "socket_connect_timeout": STORE_TIMEOUT,
                   "socket_timeout": STORE_TIMEOUT} if storage_url.startswith("redis") else {}
        store = PacedMemoryStore() if storage_url == "memory://" else \
            storage_from_string(storage_url, **options)
        self.limiter = MovingWindowRateLimiter(store)

    @classmethod
    def from_config(cls, config, rejected=None):
        def read(name):
            return setting(config, name)

        return cls(read("API_RATE_LIMIT"), read("AUTH_RATE_LIMIT"),
                   read("REDIS_URL") or "memory://", read("RATE_LIMIT_PREFIX"), rejected,
                   read("AUTH_ACCOUNT_RATE_LIMIT"), read("AUTH_ADDRESS_RATE_LIMIT"),
                   read("RATE_LIMIT_ON_ERROR"))

    def anonymous(self, request):
        """Count a request that carries no identity (a probe) against the API limit
        of its address. Uncounted when the store cannot answer, whatever
        RATE_LIMIT_ON_ERROR says: /ready must still say what is wrong."""
        self._hit("api", f"addr:{_address(request)}", fail_open=True)

    def before_body(self, route, request, claims):
        """Count a request before its body is read; 429 when over a limit."""
        address = _address(request)
        self._hit("api", f"user:{claims.user_id}" if claims else f"addr:{address}")
        if route.password_work:
            self._hit("auth_address", address)

    def after_body(self, route, request, kwargs):
        """Count a login once its (normalised) email is known; 429 when over a limit."""
        if route.auth_limit_by:
            email = str(kwargs.get(route.auth_limit_by, ""))
            self._hit("auth", _address(request), email)
            self._hit("auth_account", email)

    def _hit(self, limit, *key, fail_open=False):
        item = self.items[limit]
        try:
            if self.limiter.hit(item, limit, *key):
                return
        except StorageError as exc:
            if self.fail_open or fail_open:
                log.warning("rate limit %s not counted: its store is unreachable (%s)",
                            limit, exc.storage_error)
                return
            raise HttpError(503, "service_unavailable", "the rate limits cannot be "
                            "counted just now; try again shortly",
                            headers={"Retry-After": "5"}) from None
        if self.rejected is not None:
            self.rejected(limit)
        reset_at = self.limiter.get_window_stats(item, limit, *key).reset_time
        wait = max(1, math.ceil(reset_at - time.time()))
        raise HttpError(429, "rate_limited", f"too many requests; try again in {wait} s",
                        headers={"Retry-After": str(wait)})
