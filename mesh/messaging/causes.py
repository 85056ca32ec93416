"""What a dead letter failed of: its cause, and the fingerprint that groups it.

Two events that failed for the same reason differ only in ids and numbers
("Order 41 not found", "Order 42 not found"): the fingerprint hashes the queue,
the error's type and its message with those taken out, so `mesh dlq groups` and
the `mesh_dead_letters_total` metric count causes rather than messages.
"""
import hashlib
import re

__all__ = ["cause_of", "described", "fingerprint", "first_line"]

_TYPED = re.compile(r"^([A-Za-z_][\w.]*): (.*)$", re.S)
# a time, a uuid or a long hex id, then any number: what varies between two failures alike
_VARYING = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?"
                      r"|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
                      r"|\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b"
                      # a number, joined to a word or not ('order_41'), but not a
                      # name's digit ('sqlite3')
                      r"|(?<![A-Za-z0-9])\d+(?:\.\d+)?", re.I)
MESSAGE_SHAPE_CHARS = 200  # what a group shows of the message; the rest rarely differs


def cause_of(error):
    """`(error type, message shape)` of an `x-mesh-error` header ("Type: message")."""
    if not error:
        return "unknown", ""
    typed = _TYPED.match(error)
    error_type, message = typed.groups() if typed else ("other", error)
    shape = " ".join(_VARYING.sub("#", first_line(message)).split())
    return error_type, shape[:MESSAGE_SHAPE_CHARS]


def first_line(error):
    """An error's first line: what went wrong. A database error goes on with the
    statement and its parameters, which differ from one event to the next."""
    return next((line.strip() for line in (error or "").splitlines() if line.strip()), "")


def described(exc):
    """An exception in one line: its type and its message's first line."""
    return f"{type(exc).__name__}: {first_line(str(exc))}"


def fingerprint(queue, error):
    """12 hex digits naming `error`'s cause in `queue` (a handler's lasting queue)."""
    error_type, shape = cause_of(error)
    return hashlib.sha256(f"{queue}\n{error_type}\n{shape}".encode()).hexdigest()[:12]
