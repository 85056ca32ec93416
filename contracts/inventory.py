"""The `inventory` service: products, stock and reservations."""
from marshmallow import Schema, fields, validate

from contracts.base import (MAX_LINES, MAX_PRICE_CENTS, MAX_QUANTITY, SAFE_ID, BoundedList, Event, Int, Method, Page, PageArgs,
                            ServiceContract, Text, UtcDateTime, distinct_products)
from contracts.errors import Conflict, InvalidInput, NotFound

__all__ = ["CONTRACT", "Product", "ProductPage", "CreateProductArgs", "RestockArgs",
           "GetProductArgs", "Line", "ReserveArgs", "OrderRef", "Reservation",
           "RESERVATION_STATUSES", "OrderStock", "StockRejected", "Prices",
           "PricesArgs"]

RESERVATION_STATUSES = ("reserved", "rejected", "committed", "released")


class Product(Schema):
    id = Int(required=True)
    sku = Text(required=True)
    name = Text(required=True)
    price_cents = Int(required=True)
    stock = Int(required=True, validate=validate.Range(min=0))
    created_at = UtcDateTime(required=True)


ProductPage = Page(Product)


class GetProductArgs(Schema):
    product_id = Int(required=True)


class CreateProductArgs(Schema):
    sku = Text(required=True, validate=[validate.Length(min=1, max=64),
                                                 validate.Regexp(SAFE_ID)])
    name = Text(required=True, validate=validate.Length(min=1, max=200))
    price_cents = Int(required=True, validate=validate.Range(min=1, max=MAX_PRICE_CENTS))
    stock = Int(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))


class RestockArgs(Schema):
    product_id = Int(required=True)
    quantity = Int(required=True, validate=validate.Range(min=1, max=2**31 - 1))


class Line(Schema):
    product_id = Int(required=True)
    quantity = Int(required=True, validate=validate.Range(min=1, max=MAX_QUANTITY))


class ReserveArgs(Schema):
    order_id = Int(required=True, validate=validate.Range(min=1))
    lines = BoundedList(fields.Nested(Line), required=True,
                        validate=[validate.Length(min=1, max=MAX_LINES), distinct_products])


class OrderRef(Schema):
    order_id = Int(required=True, validate=validate.Range(min=1))


class Reservation(Schema):
    order_id = Int(required=True)
    status = Text(required=True, validate=validate.OneOf(RESERVATION_STATUSES))
    lines = BoundedList(fields.Nested(Line), required=True,
                        validate=validate.Length(max=MAX_LINES))
    short_product_ids = BoundedList(Int(), required=True,
                                    validate=validate.Length(max=MAX_LINES))


class OrderStock(Schema):
    order_id = Int(required=True)


class StockRejected(Schema):
    order_id = Int(required=True)
    short_product_ids = BoundedList(Int(), required=True,
                                    validate=validate.Length(max=MAX_LINES))


class PricesArgs(Schema):
    product_ids = BoundedList(Int(), required=True,
                              validate=validate.Length(min=1, max=100))


class Prices(Schema):
    prices = fields.Dict(keys=Text(), values=Int(), required=True)


CONTRACT = ServiceContract(
    service="inventory",
    methods={
        "create_product": Method(CreateProductArgs, Product, (InvalidInput, Conflict),
                                 "Add a product; its sku is unique."),
        "get_product": Method(GetProductArgs, Product, (InvalidInput, NotFound),
                              "One product by id.", idempotent=True),
        "get_prices": Method(
            PricesArgs, Prices, (InvalidInput, NotFound),
            "Unit prices by product id (as strings); NotFound names unknown ids in "
            "`fields['product_ids']`.", idempotent=True),
        "list_products": Method(PageArgs, ProductPage, (InvalidInput,),
                                "A page of products, oldest first, with the total.",
                                idempotent=True),
        "restock": Method(RestockArgs, Product, (InvalidInput, NotFound),
                          "Add units to a product's stock."),
        "reserve_stock": Method(
            ReserveArgs, Reservation, (InvalidInput, NotFound),
            "Reserve every line of an order or none (status `rejected`, with the "
            "short products); asking again for the same order answers the same."),
        "release_stock": Method(
            OrderRef, Reservation, (InvalidInput, NotFound),
            "Give back an order's reserved or committed units; idempotent."),
        "commit_stock": Method(
            OrderRef, Reservation, (InvalidInput, NotFound, Conflict),
            "Make an order's reservation final (the goods are sold); idempotent."),
    },
    events=[
        Event("stock_reserved", OrderStock,
              doc="Every line of an order is reserved."),
        Event("stock_rejected", StockRejected,
              doc="An order could not be reserved; nothing was."),
        Event("stock_released", OrderStock,
              doc="An order's units went back into stock."),
    ],
)
