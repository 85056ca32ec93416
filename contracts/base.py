"""The contract language: typed errors, RPC method and event declarations.

Imports only marshmallow and nameko's exception registry, so any consumer can use
`contracts/` without the platform (`mesh/`) or the services.
"""
import dataclasses
import datetime as dt
import re

from marshmallow import Schema, ValidationError, fields, validate
from nameko.exceptions import deserialize_to_instance

__all__ = [
    "ContractError", "Event", "Method", "ServiceContract", "Int", "Id", "Text", "EmailAddress",
    "BoundedList", "MAX_LINES", "MAX_QUANTITY", "MAX_PRICE_CENTS", "MAX_TOTAL_CENTS",
    "UtcDateTime", "Page", "page_of", "PageArgs", "EventEnvelope", "SAFE_ID", "distinct_products",
    "normalise_email", "Nothing",
]

SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_LINES = 50  # lines of one order, and of its reservation
MAX_QUANTITY = 1000  # units of one product on one line
MAX_PRICE_CENTS = 2**31 - 1
MAX_ID = 2**31 - 1
# the most an order can cost: every store (BIGINT on PostgreSQL) holds it
MAX_TOTAL_CENTS = MAX_LINES * MAX_QUANTITY * MAX_PRICE_CENTS


class ContractError(Exception):
    """An expected failure declared in a contract; callers catch it by class.

    Every subclass is registered with nameko, so it crosses RPC as itself rather
    than as a `RemoteError`. Its args stay JSON-able: `(message, fields)`.
    """

    code = "error"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        deserialize_to_instance(cls)

    def __init__(self, message, fields=None):
        super().__init__(message, fields or {})

    @property
    def message(self):
        return self.args[0]

    @property
    def fields(self):
        return self.args[1]

    def __str__(self):
        return self.message


INT64 = 2**63


class Int(fields.Integer):
    """A strict 64-bit integer: rejects floats, numeric strings, booleans, and
    numbers no database column could hold."""

    default_error_messages = {"range": "Number out of range."}

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        value = super()._validated(value)
        if value is not None and not -INT64 <= value < INT64:
            raise self.make_error("range")
        return value


class Id(Int):
    """A row id: 1 to 2^31 - 1, what an INTEGER key holds on every backend (an id
    beyond it is refused as invalid rather than failing in PostgreSQL)."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Range(min=1, max=MAX_ID), **kwargs)


class Text(fields.String):
    """A string every database, driver and library can take: valid Unicode (no lone
    surrogate, which JSON's `\\ud800` can smuggle in) and no NUL character."""

    default_error_messages = {
        "not_text": "Not valid text: it holds a NUL character or a lone surrogate."}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in value:
            raise self.make_error("not_text")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.make_error("not_text") from None
        return value


class BoundedList(fields.List):
    """A list whose `validate.Length` is checked before any element is loaded:
    marshmallow checks lengths after loading every element, and a 1 MiB order of
    28,000 items cost a third of a second of CPU before being refused. Every list
    in a contract is bounded (the OpenAPI document shows the same bounds)."""

    def __init__(self, cls_or_instance, **kwargs):
        validators = kwargs.get("validate")
        validators = validators if isinstance(validators, (list, tuple)) else [validators]
        lengths = [v for v in validators if isinstance(v, validate.Length)]
        if not lengths or lengths[0].max is None:
            raise ValueError("a contract's list needs validate.Length(max=...)")
        self.length = lengths[0]
        super().__init__(cls_or_instance, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (list, tuple)):
            self.length(value)  # raises ValidationError with its own message
        return super()._deserialize(value, attr, data, **kwargs)


def normalise_email(email):
    """The one form of an email address: lookups, storage and rate limits all use it."""
    return email.strip().lower()


class EmailAddress(Text):
    """An email address, stripped (Unicode whitespace too) and lower-cased as it is
    loaded; checked as an address unless `check_format=False` (a login's email only
    has to match one, and must not say which do not exist)."""

    def __init__(self, *, check_format=True, **kwargs):
        validators = kwargs.pop("validate", None)
        validators = list(validators) if isinstance(validators, (list, tuple)) else \
            [validators] if validators else []
        if check_format:
            validators.append(validate.Email())
        super().__init__(validate=validators, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return normalise_email(super()._deserialize(value, attr, data, **kwargs))


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC, written with a `Z`."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dt.datetime):
            return value
        return super()._deserialize(value, attr, data, **kwargs)


def distinct_products(lines):
    """Validator: each product appears on one line only."""
    ids = [line["product_id"] for line in lines]
    if len(ids) != len(set(ids)):
        raise ValidationError("Each product may appear on one line only.")


class PageArgs(Schema):
    limit = Int(load_default=20, validate=validate.Range(min=1, max=100))
    offset = Int(load_default=0, validate=validate.Range(min=0))


def Page(item_schema):
    """A page of `item_schema`: `{items, total, limit, offset}`."""
    return Schema.from_dict(
        {
            "items": BoundedList(fields.Nested(item_schema), required=True,
                                 validate=validate.Length(max=100)),
            "total": Int(required=True),
            "limit": Int(required=True),
            "offset": Int(required=True),
        },
        name=f"{item_schema.__name__}Page",
    )


def page_of(items, total, limit, offset):
    """What a `Page` method returns."""
    return {"items": items, "total": total, "limit": limit, "offset": offset}


class Nothing(Schema):
    """The result of a method that answers only "done" (an HTTP 204)."""


@dataclasses.dataclass(frozen=True)
class Method:
    """One RPC method: its keyword arguments, its result and its expected errors.

    `idempotent` marks a read: calling it twice changes nothing, so a caller may
    send it again after a timeout or a lost connection (see mesh.messaging.policy).
    """

    args: type[Schema]
    result: type[Schema]
    errors: tuple[type[ContractError], ...] = ()
    doc: str = ""
    idempotent: bool = False


@dataclasses.dataclass(frozen=True)
class Event:
    """One event type and the schema of its `data`, at one version.

    A `notice` is for running instances only (what they keep in memory goes
    stale): when no queue takes it, none runs and nobody needs it, so it is
    marked sent instead of waiting in the outbox for a consumer.

    `scrubbed` names fields of `data` (secrets) that only the delivery needs:
    the publisher's outbox row drops them once the broker has the event.
    """

    type: str
    data: type[Schema]
    version: int = 1
    doc: str = ""
    notice: bool = False
    scrubbed: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ServiceContract:
    """What a service offers: its RPC methods and the events it publishes.

    `events` is given as a sequence of `Event`s and kept keyed by their type.
    """

    service: str
    methods: dict[str, Method]
    events: dict[str, Event] = ()

    def __post_init__(self):
        object.__setattr__(self, "events", {event.type: event for event in self.events})

    def method(self, name):
        try:
            return self.methods[name]
        except KeyError:
            raise AttributeError(
                f"{self.service} declares no RPC method {name!r}") from None


class EventEnvelope(Schema):
    """What every event on the wire looks like; `data` is checked per type."""

    event_id = fields.UUID(required=True)
    type = fields.String(required=True)
    version = Int(required=True, validate=validate.Range(min=1))
    occurred_at = UtcDateTime(required=True)
    correlation_id = fields.String(load_default=None, allow_none=True)
    data = fields.Dict(required=True)

