"""Inventory rules: stock is what can still be ordered and never goes below zero.

Every change to stock is one conditional UPDATE, so concurrent reservations
can never oversell, on SQLite or PostgreSQL alike.
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
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"sku {sku} already exists") from None
    return product


def get_product(session, product_id):
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    return product


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
        session.rollback()
        get_product(session, product_id)  # NotFound when absent
        raise InvalidInput(f"restocking would take product {product_id} past "
                           f"{MAX_STOCK} units", {"quantity": ["Too many units."]})
    session.commit()
    return get_product(session, product_id)


def _existing(session, order_id, lines):
    session.expire_all()
    reservation = session.get(Reservation, order_id)
    asked = {(line["product_id"], line["quantity"]) for line in lines}
    held = {(line.product_id, line.quantity) for line in reservation.lines}
    if reservation.status != "rejected" and asked != held:
        raise Conflict(f"order {order_id} already holds a different reservation")
    return reservation


def reserve(session, order_id, lines):
    """Reserve every line or none; the same order asking again gets the same answer."""
    if session.get(Reservation, order_id) is not None:
        return _existing(session, order_id, lines)
    wanted = {line["product_id"]: line["quantity"] for line in lines}
    known = set(session.scalars(select(Product.id).where(Product.id.in_(wanted))))
    missing = sorted(set(wanted) - known)
    if missing:
        raise NotFound(f"product {missing[0]} not found",
                       {"product_ids": missing})
    try:
        # the header first: a concurrent call for this order waits on it and fails
        session.add(Reservation(order_id=order_id, status="reserved"))
        session.flush()
        short = []
        # one lock order for every transaction, so two orders cannot deadlock
        for product_id in sorted(wanted):
            quantity = wanted[product_id]
            result = session.execute(
                update(Product)
                .where(Product.id == product_id, Product.stock >= quantity)
                .values(stock=Product.stock - quantity))
            if result.rowcount == 0:
                short.append(product_id)
        if short:
            session.rollback()
            session.add(Reservation(order_id=order_id, status="rejected",
                                    short_product_ids=",".join(map(str, short))))
        else:
            session.add_all(ReservationLine(order_id=order_id, product_id=p, quantity=q)
                            for p, q in wanted.items())
        session.commit()
    except IntegrityError:
        session.rollback()
        return _existing(session, order_id, lines)
    session.expire_all()
    return session.get(Reservation, order_id)


def _reservation(session, order_id):
    reservation = session.get(Reservation, order_id)
    if reservation is None:
        raise NotFound(f"no reservation for order {order_id}")
    return reservation


def release(session, order_id):
    """Give the units of a reserved or committed reservation back; idempotent."""
    claimed = session.execute(
        update(Reservation)
        .where(Reservation.order_id == order_id,
               Reservation.status.in_(("reserved", "committed")))
        .values(status="released"))
    if claimed.rowcount:
        # only the caller that moved the status gives the units back
        for line in session.scalars(
                select(ReservationLine).where(ReservationLine.order_id == order_id)
                .order_by(ReservationLine.product_id)):
            session.execute(update(Product).where(Product.id == line.product_id)
                            .values(stock=Product.stock + line.quantity))
    session.commit()
    session.expire_all()
    return _reservation(session, order_id)


def commit(session, order_id):
    """Make a reservation final; idempotent; Conflict once it was released or rejected."""
    session.execute(
        update(Reservation)
        .where(Reservation.order_id == order_id, Reservation.status == "reserved")
        .values(status="committed"))
    session.commit()
    session.expire_all()
    reservation = _reservation(session, order_id)
    if reservation.status != "committed":
        raise Conflict(f"the reservation of order {order_id} is {reservation.status}")
    return reservation
