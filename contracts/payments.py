"""The `payments` service: payment capture and refunds (a simulated provider)."""
from marshmallow import Schema, validate

from contracts.base import Event, Int, Method, ServiceContract, Text, UtcDateTime
from contracts.errors import InvalidInput, NotFound

__all__ = ["CONTRACT", "Payment", "PaymentCaptured", "PaymentDeclined", "PaymentRefunded"]


class Payment(Schema):
    id = Int(required=True)
    order_id = Int(required=True)
    amount_cents = Int(required=True)
    status = Text(required=True,
                           validate=validate.OneOf(("captured", "declined", "refunded")))
    provider_ref = Text(required=True, allow_none=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


class PaymentRef(Schema):
    order_id = Int(required=True)


class PaymentCaptured(Schema):
    order_id = Int(required=True)
    payment_id = Int(required=True)
    amount_cents = Int(required=True)


class PaymentDeclined(Schema):
    order_id = Int(required=True)
    reason = Text(required=True)


class PaymentRefunded(Schema):
    order_id = Int(required=True)
    payment_id = Int(required=True)
    amount_cents = Int(required=True)


CONTRACT = ServiceContract(
    service="payments",
    methods={
        "get_payment": Method(PaymentRef, Payment, (InvalidInput, NotFound),
                              "An order's payment.", idempotent=True),
    },
    events=[
        Event("payment_captured", PaymentCaptured),
        Event("payment_declined", PaymentDeclined),
        Event("payment_refunded", PaymentRefunded),
    ],
)
