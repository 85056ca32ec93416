"""The `orders` service: orders, their lines and the saga that moves them on."""
from marshmallow import Schema, fields, validate

from contracts.base import (MAX_LINES, MAX_QUANTITY, BoundedList, Event, Int, Method, Page, PageArgs,
                            ServiceContract, Text, UtcDateTime, distinct_products)
from contracts.errors import Busy, Conflict, InvalidInput, NotFound

__all__ = ["CONTRACT", "Order", "OrderPage", "CreateOrderArgs", "OrderRef",
           "ListOrdersArgs", "UnknownProduct", "NotCancellable", "IdempotencyKeyReused",
           "STATUSES", "REASONS", "CARD_TOKEN"]

STATUSES = ("pending", "confirmed", "rejected", "cancelling", "cancelled")
REASONS = ("insufficient_stock", "payment_declined", "timeout")
CARD_TOKEN = r"^tok_[a-z0-9_]{1,64}$"


class UnknownProduct(InvalidInput):
    """An order names a product that does not exist."""
    code = "unknown_product"


class NotCancellable(Conflict):
    """Only a confirmed order can be cancelled."""
    code = "order_not_cancellable"


class IdempotencyKeyReused(Conflict):
    """The same idempotency key came with a different body."""
    code = "idempotency_key_reused"


class OrderLine(Schema):
    product_id = Int(required=True)
    quantity = Int(required=True)
    unit_price_cents = Int(required=True)


class Order(Schema):
    id = Int(required=True)
    user_id = Int(required=True)
    status = Text(required=True, validate=validate.OneOf(STATUSES))
    reason = Text(required=True, allow_none=True)
    items = BoundedList(fields.Nested(OrderLine), required=True,
                        validate=validate.Length(max=MAX_LINES))
    total_cents = Int(required=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


OrderPage = Page(Order)


class ItemArgs(Schema):
    product_id = Int(required=True, validate=validate.Range(min=1))
    quantity = Int(required=True, validate=validate.Range(min=1, max=MAX_QUANTITY))


class PaymentArgs(Schema):
    card_token = Text(required=True, validate=validate.Regexp(CARD_TOKEN))


class CreateOrderArgs(Schema):
    user_id = Int(required=True)
    items = BoundedList(fields.Nested(ItemArgs), required=True,
                        validate=[validate.Length(min=1, max=MAX_LINES), distinct_products])
    payment = fields.Nested(PaymentArgs, required=True)
    idempotency_key = Text(load_default=None, allow_none=True,
                                    validate=validate.Length(min=1, max=128))


class OrderRef(Schema):
    order_id = Int(required=True)
    user_id = Int(load_default=None, allow_none=True)


class ListOrdersArgs(PageArgs):
    user_id = Int(required=True)


class OrderCreated(Schema):
    order_id = Int(required=True)
    user_id = Int(required=True)
    lines = BoundedList(fields.Nested(ItemArgs), required=True,
                        validate=validate.Length(min=1, max=MAX_LINES))
    total_cents = Int(required=True)


class PaymentRequested(Schema):
    order_id = Int(required=True)
    user_id = Int(required=True)
    amount_cents = Int(required=True)
    card_token = Text(required=True, validate=validate.Regexp(CARD_TOKEN))


class OrderOutcome(Schema):
    order_id = Int(required=True)
    user_id = Int(required=True)
    total_cents = Int(required=True)
    reason = Text(load_default=None, allow_none=True)


CONTRACT = ServiceContract(
    service="orders",
    methods={
        "create_order": Method(
            CreateOrderArgs, Order,
            (InvalidInput, UnknownProduct, IdempotencyKeyReused, Busy),
            "Create a pending order for `user_id`; unit prices are fixed now. The same "
            "user and idempotency key with the same body return the same order. Busy "
            "while inventory cannot answer."),
        "get_order": Method(
            OrderRef, Order, (InvalidInput, NotFound),
            "One order; with `user_id`, only that user's (else NotFound).",
            idempotent=True),
        "list_orders": Method(ListOrdersArgs, OrderPage, (InvalidInput,),
                              "A user's orders, newest first, with the total.",
                              idempotent=True),
        "cancel_order": Method(
            OrderRef, Order, (InvalidInput, NotFound, NotCancellable),
            "Start cancelling a confirmed order: refund and release follow."),
    },
    events=[
        Event("order_created", OrderCreated,
              doc="A pending order asks for its stock."),
        Event("payment_requested", PaymentRequested,
              doc="Stock is held; capture the payment.", scrubbed=("card_token",)),
        Event("order_confirmed", OrderOutcome,
              doc="Stock reserved and payment captured."),
        Event("order_rejected", OrderOutcome,
              doc="The order failed; `reason` says why. Release and "
                  "refund whatever was taken."),
        Event("order_cancelling", OrderOutcome,
              doc="A confirmed order is being cancelled: refund "
                  "and release."),
        Event("order_cancelled", OrderOutcome,
              doc="Refunded and returned to stock."),
    ],
)
