"""Schemathesis hooks for tests/e2e/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

Strings generated from the document never hold a lone UTF-16 surrogate (they are
drawn as UTF-8) and only sometimes a NUL. A third of the JSON bodies get every
string poisoned with one of the two (sent as the JSON escapes "\\ud800" and
"\\u0000"), the inputs that once reached argon2 and the database drivers.
"""
from hypothesis import strategies as st

import schemathesis

POISONS = ("\ud800", "\x00")


def poisoned(value, poison):
    if isinstance(value, str):
        return value[:1] + poison + value[1:]
    if isinstance(value, dict):
        return {key: poisoned(item, poison) for key, item in value.items()}
    if isinstance(value, list):
        return [poisoned(item, poison) for item in value]
    return value


@schemathesis.hook
def flatmap_body(context, body):
    return st.sampled_from([body, *(poisoned(body, poison) for poison in POISONS)])
