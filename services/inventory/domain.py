"""Inventory rules: stock is what can still be ordered and never goes below zero.

Every change to stock is one conditional UPDATE, so concurrent reservations can
never oversell, on SQLite or PostgreSQL alike. Functions here take the worker's
session and speak SQL through its connection (reads by id run on every order
and every product page: the ORM's loading cost more than the query), and reads
that change nothing take a connection; products and reservations come back as
contract dicts. Events are recorded here, through the outbox; nothing here
commits: the platform ends the worker's unit of work (mesh.data.db.Database).
"""
import contextlib

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from contracts.errors import Conflict, InvalidInput, NotFound
from mesh.data.precompiled import precompiled
from services.inventory.models import Product, Reservation, ReservationLine

MAX_STOCK = 2**31 - 1
PRODUCTS, RESERVATIONS = Product.__table__, Reservation.__table__
LINES = ReservationLine.__table__
PRODUCT = (PRODUCTS.c.id, PRODUCTS.c.sku, PRODUCTS.c.name, PRODUCTS.c.price_cents,
           PRODUCTS.c.stock, PRODUCTS.c.created_at)
# what each order and product page runs: built and compiled once (mesh.data.precompiled)
PRODUCT_BY_ID = precompiled(select(*PRODUCT).where(PRODUCTS.c.id == bindparam("product_id")))
RESERVATION_BY_ORDER = precompiled(
    select(RESERVATIONS.c.order_id, RESERVATIONS.c.status, RESERVATIONS.c.short_product_ids)
    .where(RESERVATIONS.c.order_id == bindparam("order_id")))
LINES_BY_ORDER = precompiled(
    select(LINES.c.product_id, LINES.c.quantity)
    .where(LINES.c.order_id == bindparam("order_id")).order_by(LINES.c.product_id))
PRICES = precompiled(select(PRODUCTS.c.id, PRODUCTS.c.price_cents)
                     .where(PRODUCTS.c.id.in_(bindparam("b_ids", expanding=True))))
TAKE = precompiled(
    update(PRODUCTS).where(PRODUCTS.c.id == bindparam("b_id"),
                           PRODUCTS.c.stock >= bindparam("b_quantity"))
    .values(stock=PRODUCTS.c.stock - bindparam("b_quantity")))
GIVE_BACK = precompiled(
    update(PRODUCTS).where(PRODUCTS.c.id == bindparam("b_id"))
    .values(stock=PRODUCTS.c.stock + bindparam("b_quantity")))
# An order's reservation is claimed by inserting its header: a concurrent call
# for the same order waits on it, then inserts nothing and reads what the first
# one made (a failed insert would roll back the caller's whole transaction,
# inbox row included).
HOLD = {module.dialect.name: precompiled(module.insert(RESERVATIONS).on_conflict_do_nothing())
        for module in (postgresql, sqlite)}
UNHOLD = precompiled(delete(RESERVATIONS).where(RESERVATIONS.c.order_id == bindparam("b_order")))
HOLD_LINES = precompiled(insert(LINES))
# a status change applies only from the statuses named
ORDER_IS = RESERVATIONS.c.order_id == bindparam("b_order")
REJECT = precompiled(update(RESERVATIONS).where(ORDER_IS, RESERVATIONS.c.status == "reserved")
                     .values(status="rejected"))
COMMIT = precompiled(update(RESERVATIONS).where(ORDER_IS, RESERVATIONS.c.status == "reserved")
                     .values(status="committed").returning(RESERVATIONS.c.order_id))
RELEASE = precompiled(update(RESERVATIONS).where(
    ORDER_IS, RESERVATIONS.c.status.in_(bindparam("b_from", expanding=True)))
    .values(status="released"))


def create_product(session, sku, name, price_cents, stock):
    try:
        row = session.connection().execute(
            insert(PRODUCTS).values(sku=sku, name=name, price_cents=price_cents,
                                    stock=stock).returning(*PRODUCT)).one()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"sku {sku} already exists") from None
    return row._asdict()


def get_product(conn, product_id):
    row = conn.execute(PRODUCT_BY_ID, {"product_id": product_id}).first()
    if row is None:
        raise NotFound(f"product {product_id} not found")
    return row._asdict()


def get_prices(conn, product_ids):
    """`{product_id: price_cents}`; NotFound naming every unknown id."""
    rows = conn.execute(PRICES, {"b_ids": list(product_ids)}).all()
    prices = {row.id: row.price_cents for row in rows}
    missing = sorted(set(product_ids) - set(prices))
    if missing:
        raise NotFound(f"product {missing[0]} not found", {"product_ids": missing})
    return prices


def list_products(conn, limit, offset):
    """One page of products, oldest first, and how many there are in all."""
    total = conn.scalar(select(func.count()).select_from(PRODUCTS))
    rows = conn.execute(select(*PRODUCT).order_by(PRODUCTS.c.id).limit(limit)
                        .offset(offset)).all()
    return [row._asdict() for row in rows], total


def restock(session, product_id, quantity):
    row = session.connection().execute(
        update(PRODUCTS)
        .where(PRODUCTS.c.id == product_id, PRODUCTS.c.stock <= MAX_STOCK - quantity)
        .values(stock=PRODUCTS.c.stock + quantity).returning(*PRODUCT)).first()
    if row is None:
        get_product(session.connection(), product_id)  # NotFound when absent
        raise InvalidInput(f"restocking would take product {product_id} past "
                           f"{MAX_STOCK} units", {"quantity": ["Too many units."]})
    return row._asdict()


def _add_stock(conn, product_id, quantity):
    conn.execute(GIVE_BACK, {"b_id": product_id, "b_quantity": quantity})


def _reservation(session, order_id, required=False):
    """The reservation of `order_id` as a dict; None when it has none, or NotFound
    when one is `required`."""
    conn = session.connection()
    row = conn.execute(RESERVATION_BY_ORDER, {"order_id": order_id}).first()
    if row is None:
        if required:
            raise NotFound(f"no reservation for order {order_id}")
        return None
    lines = conn.execute(LINES_BY_ORDER, {"order_id": order_id}).all()
    return {"order_id": row.order_id, "status": row.status,
            "lines": [{"product_id": p, "quantity": q} for p, q in lines],
            "short_product_ids": [int(x) for x in row.short_product_ids.split(",") if x]}


def _existing(reservation, lines):
    asked = {(line["product_id"], line["quantity"]) for line in lines}
    held = {(line["product_id"], line["quantity"]) for line in reservation["lines"]}
    if reservation["status"] != "rejected" and asked != held:
        raise Conflict(f"order {reservation['order_id']} already holds a different "
                       "reservation")
    return reservation, False


def reserve(session, order_id, lines):
    """Reserve every line or none: `(reservation, created)`.

    The same order asking again gets the same reservation, with created False.
    An unknown product raises NotFound and leaves nothing behind.
    """
    wanted = {line["product_id"]: line["quantity"] for line in lines}
    conn = session.connection()
    # the header first: the order's claim (see HOLD)
    if not conn.execute(HOLD[conn.dialect.name],
                        {"order_id": order_id, "status": "reserved"}).rowcount:
        return _existing(_reservation(session, order_id, required=True), lines)
    taken, short = [], []
    # one lock order for every transaction, so two orders cannot deadlock
    for product_id in sorted(wanted):
        result = conn.execute(TAKE, {"b_id": product_id, "b_quantity": wanted[product_id]})
        (taken if result.rowcount else short).append(product_id)
    if short:
        for product_id in taken:  # all or nothing
            _add_stock(conn, product_id, wanted[product_id])
        # a product no update found may not exist: only then is it looked up
        try:
            get_prices(conn, short)  # NotFound naming every unknown product
        except NotFound:
            conn.execute(UNHOLD, {"b_order": order_id})
            raise
        conn.execute(REJECT, {"b_order": order_id,
                              "short_product_ids": ",".join(map(str, short))})
        return {"order_id": order_id, "status": "rejected", "lines": [],
                "short_product_ids": short}, True
    held = [{"product_id": p, "quantity": wanted[p]} for p in sorted(wanted)]
    conn.execute(HOLD_LINES, [{"order_id": order_id, **line} for line in held])
    return {"order_id": order_id, "status": "reserved", "lines": held,
            "short_product_ids": []}, True


def release(session, order_id):
    """Give back a reserved or committed reservation's units: `(reservation, released)`.

    `released` is True only for the call that gave the units back.
    """
    conn = session.connection()
    claimed = conn.execute(RELEASE, {"b_order": order_id,
                                     "b_from": ["reserved", "committed"]})
    if claimed.rowcount:
        for product_id, quantity in conn.execute(LINES_BY_ORDER, {"order_id": order_id}):
            _add_stock(conn, product_id, quantity)
    return _reservation(session, order_id, required=True), bool(claimed.rowcount)


def commit(session, order_id):
    """Make a reservation final and return it; idempotent; Conflict once it was
    released or rejected."""
    on_order_confirmed(session, order_id)
    return _reservation(session, order_id, required=True)


def on_order_confirmed(session, order_id):
    """`commit`, answering nothing: one statement when the reservation was held."""
    conn = session.connection()
    if conn.execute(COMMIT, {"b_order": order_id}).first() is not None:
        return
    row = conn.execute(RESERVATION_BY_ORDER, {"order_id": order_id}).first()
    if row is None:
        raise NotFound(f"no reservation for order {order_id}")
    if row.status != "committed":
        raise Conflict(f"the reservation of order {order_id} is {row.status}")


def on_order_created(session, outbox, order_id, lines):
    """Reserve an order's lines; announce `stock_reserved` or `stock_rejected` once."""
    try:
        reservation, created = reserve(session, order_id, lines)
    except NotFound as exc:
        outbox.add(session, "stock_rejected", {
            "order_id": order_id, "short_product_ids": exc.fields.get("product_ids", [])})
        return
    if not created:
        return
    if reservation["status"] == "reserved":
        outbox.add(session, "stock_reserved", {"order_id": order_id})
    else:
        outbox.add(session, "stock_rejected", {
            "order_id": order_id, "short_product_ids": reservation["short_product_ids"]})


def on_order_cancelling(session, outbox, order_id):
    """Give back a cancelled order's units (if any were held); announce `stock_released`."""
    with contextlib.suppress(NotFound):
        release(session, order_id)
    outbox.add(session, "stock_released", {"order_id": order_id})
