"""Slow salted password hashes (argon2), computed off the event loop."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import tpool

__all__ = ["hash_password", "verify_password", "DUMMY_HASH"]

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
