"""Inventory rules: stock is what can still be ordered and never goes below zero.

Every change to stock is one conditional UPDATE, so concurrent reservations can
never oversell, on SQLite or PostgreSQL alike. Functions here flush but do not
commit: the RPC method or the event handler commits, with the events (outbox)
and the inbox row in the same transaction.
"""
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from contracts.errors import Conflict, InvalidInput, NotFound
from services.inventory.models import Product, Reservation, ReservationLine

MAX_STOCK = 2**31 - 1


def create_product(session, sku, name, price_cents, stock):
    product = Product(sku=sku, name=name, price_cents=price_cents, stock=stock)
    session.add(product)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"sku {sku} already exists") from None
    return product


def get_product(session, product_id):
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    return product


def get_prices(session, product_ids):
    """`{product_id: price_cents}`; NotFound naming every unknown id."""
    rows = session.execute(select(Product.id, Product.price_cents)
                           .where(Product.id.in_(product_ids))).all()
    prices = {row.id: row.price_cents for row in rows}
    missing = sorted(set(product_ids) - set(prices))
    if missing:
        raise NotFound(f"product {missing[0]} not found", {"product_ids": missing})
    return prices


def list_products(session, limit, offset):
    """One page of products, oldest first, and how many there are in all."""
    total = session.scalar(select(func.count()).select_from(Product))
    items = session.scalars(
        select(Product).order_by(Product.id).limit(limit).offset(offset)).all()
    return items, total


def restock(session, product_id, quantity):
    result = session.execute(
        update(Product)
        .where(Product.id == product_id, Product.stock <= MAX_STOCK - quantity)
        .values(stock=Product.stock + quantity))
    if result.rowcount == 0:
        get_product(session, product_id)  # NotFound when absent
        raise InvalidInput(f"restocking would take product {product_id} past "
                           f"{MAX_STOCK} units", {"quantity": ["Too many units."]})
    session.expire_all()
    return get_product(session, product_id)


def _add_stock(session, product_id, quantity):
    session.execute(update(Product).where(Product.id == product_id)
                    .values(stock=Product.stock + quantity))


def _existing(session, order_id, lines):
    reservation = session.get(Reservation, order_id)
    asked = {(line["product_id"], line["quantity"]) for line in lines}
    held = {(line.product_id, line.quantity) for line in reservation.lines}
    if reservation.status != "rejected" and asked != held:
        raise Conflict(f"order {order_id} already holds a different reservation")
    return reservation, False


def reserve(session, order_id, lines):
    """Reserve every line or none: `(reservation, created)`.

    The same order asking again gets the same reservation, with created False.
    """
    if session.get(Reservation, order_id) is not None:
        return _existing(session, order_id, lines)
    wanted = {line["product_id"]: line["quantity"] for line in lines}
    get_prices(session, list(wanted))  # NotFound for unknown products
    try:
        # the header first: a concurrent call for this order waits on it and fails
        reservation = Reservation(order_id=order_id, status="reserved")
        session.add(reservation)
        session.flush()
    except IntegrityError:
        session.rollback()
        return _existing(session, order_id, lines)
    taken, short = [], []
    # one lock order for every transaction, so two orders cannot deadlock
    for product_id in sorted(wanted):
        result = session.execute(
            update(Product)
            .where(Product.id == product_id, Product.stock >= wanted[product_id])
            .values(stock=Product.stock - wanted[product_id]))
        (taken if result.rowcount else short).append(product_id)
    if short:
        for product_id in taken:  # all or nothing
            _add_stock(session, product_id, wanted[product_id])
        reservation.status = "rejected"
        reservation.short_product_ids = ",".join(map(str, short))
    else:
        session.add_all(ReservationLine(order_id=order_id, product_id=p, quantity=q)
                        for p, q in wanted.items())
    session.flush()
    session.expire(reservation)
    return reservation, True


def _reservation(session, order_id):
    reservation = session.get(Reservation, order_id)
    if reservation is None:
        raise NotFound(f"no reservation for order {order_id}")
    return reservation


def release(session, order_id):
    """Give back a reserved or committed reservation's units: `(reservation, released)`.

    `released` is True only for the call that gave the units back.
    """
    claimed = session.execute(
        update(Reservation)
        .where(Reservation.order_id == order_id,
               Reservation.status.in_(("reserved", "committed")))
        .values(status="released"))
    if claimed.rowcount:
        for line in session.scalars(
                select(ReservationLine).where(ReservationLine.order_id == order_id)
                .order_by(ReservationLine.product_id)):
            _add_stock(session, line.product_id, line.quantity)
    session.expire_all()
    return _reservation(session, order_id), bool(claimed.rowcount)


def commit(session, order_id):
    """Make a reservation final; idempotent; Conflict once it was released or rejected."""
    session.execute(
        update(Reservation)
        .where(Reservation.order_id == order_id, Reservation.status == "reserved")
        .values(status="committed"))
    session.expire_all()
    reservation = _reservation(session, order_id)
    if reservation.status != "committed":
        raise Conflict(f"the reservation of order {order_id} is {reservation.status}")
    return reservation
