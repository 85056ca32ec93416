"""Slow salted password hashes (argon2), computed off the event loop, a few at a time.

One argon2 hash or check costs ~120 ms of CPU and 64 MiB here, so a flood of logins
or registrations could starve a process of both. `Passwords` lets at most
PASSWORD_HASH_CONCURRENCY run at once in a process; a call that cannot start within
PASSWORD_HASH_WAIT seconds raises `contracts.errors.Busy` (the gateway answers 503
with Retry-After).
"""
import contextlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import tpool
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider

from contracts.errors import Busy
from mesh.core.config import setting

__all__ = ["hash_password", "verify_password", "DUMMY_HASH", "Passwords", "PasswordSlots"]

_hasher = PasswordHasher()
# Verified against when an email is unknown, so that answer costs the same time.
# It uses the hasher's default parameters (a test keeps the two in step).
DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$0qTi4u+Eg5efelFGiuUCxw"
              "$zQmh6oMd+clkVpAx1rhXGU8uPM5p+yGCgNJWKRwnIuc")


def hash_password(password):
    """An argon2id hash of `password`; runs in a real thread, not blocking the hub."""
    return tpool.execute(_hasher.hash, password)


def verify_password(password_hash, password):
    """True when `password` matches; never raises for a wrong or odd password."""
    try:
        return tpool.execute(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class PasswordSlots:
    """`hash(password)` and `verify(hash, password)`, at most `concurrency` at once;
    a caller waits up to `wait` seconds for its turn, then gets `Busy`."""

    def __init__(self, concurrency, wait):
        self.slots, self.wait = Semaphore(concurrency), wait

    @contextlib.contextmanager
    def _turn(self):
        if not self.slots.acquire(timeout=self.wait):
            raise Busy("too many password checks at once; try again shortly")
        try:
            yield
        finally:
            self.slots.release()

    def hash(self, password):
        with self._turn():
            return hash_password(password)

    def verify(self, password_hash, password):
        with self._turn():
            return verify_password(password_hash, password)


class Passwords(DependencyProvider):
    """``passwords = Passwords()``: the process's `PasswordSlots`."""

    def setup(self):
        config = self.container.config
        self.slots = PasswordSlots(setting(config, "PASSWORD_HASH_CONCURRENCY"),
                                   setting(config, "PASSWORD_HASH_WAIT"))

    def get_dependency(self, worker_ctx):
        return self.slots
