"""Order rules and the saga's state machine, persisted on the order row.

    pending ──stock reserved──► (payment requested) ──payment captured──► confirmed
       │                                            └─payment declined──► rejected
       ├──stock rejected──────────────────────────────────────────────► rejected
       └──stuck past the timeout──────────────────────────────────────► rejected (timeout)
    confirmed ──cancel──► cancelling ──stock released + payment refunded──► cancelled
    rejected ──payment captured late (none known yet)──► captured, order_rejected again
       └──payment refunded (before or after it)──► refunded: a capture then is stale

Every transition is one conditional UPDATE on the current status that returns
what the next step needs, so two deliveries, two instances or a timeout racing a
handler cannot both apply one. Each records its events in the outbox in the same
transaction. Nothing here commits: the platform ends the unit of work.

Functions take the worker's session and speak SQL through its connection: the
saga runs several steps per order, and the ORM's loading and identity map cost
several times the statements themselves. Reads that change nothing take a
connection. Orders come back as contract dicts.
"""
import hashlib
import json

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from contracts.errors import NotFound
from contracts.orders import IdempotencyKeyReused, NotCancellable
from mesh.data.db import utcnow
from mesh.data.precompiled import precompiled
from mesh.data.retention import Rule
from services.orders.models import Order, OrderLine

ORDERS, LINES = Order.__table__, OrderLine.__table__
IN_FLIGHT = ("pending", "cancelling")  # the saga still has steps to take
# what a saga step reads of an order, and what its announcements carry
SAGA = (ORDERS.c.id, ORDERS.c.user_id, ORDERS.c.status, ORDERS.c.reason,
        ORDERS.c.total_cents, ORDERS.c.card_token, ORDERS.c.stock_state,
        ORDERS.c.payment_state)
VIEW = (ORDERS.c.id, ORDERS.c.user_id, ORDERS.c.status, ORDERS.c.reason,
        ORDERS.c.total_cents, ORDERS.c.created_at, ORDERS.c.updated_at)
ITEMS = select(LINES.c.order_id, LINES.c.product_id, LINES.c.quantity,
               LINES.c.unit_price_cents).order_by(LINES.c.order_id, LINES.c.product_id)
# Statements are built once: building one costs more than running it. An UPDATE
# without .values() sets the columns named by the parameters it is run with.
BY_ID = precompiled(select(*VIEW).where(ORDERS.c.id == bindparam("order_id")))
SAGA_BY_ID = precompiled(select(*SAGA).where(ORDERS.c.id == bindparam("order_id")))
BY_KEY = precompiled(select(*VIEW, ORDERS.c.request_hash).where(
    ORDERS.c.user_id == bindparam("b_user"), ORDERS.c.idempotency_key == bindparam("b_key")))
CREATE = precompiled(insert(ORDERS).returning(ORDERS.c.id))
# a transition: from the statuses in b_from to the columns named by its parameters
MOVE = precompiled(update(ORDERS).where(
    ORDERS.c.id == bindparam("b_id"), ORDERS.c.status.in_(bindparam("b_from", expanding=True)))
    .returning(*SAGA))
ADD_LINES = precompiled(insert(LINES))
# A capture that finds the order rejected is news only while the row knows of no
# payment: once it says captured (the refund was asked for) or refunded (the money
# is back: the refund can overtake the capture's news), the capture is stale.
LATE_CAPTURE = precompiled(
    update(ORDERS).where(ORDERS.c.id == bindparam("b_id"), ORDERS.c.status == "rejected",
                         ORDERS.c.payment_state == "none")
    .values(payment_state="captured", updated_at=bindparam("b_now")).returning(*SAGA))
# A client may retry with its Idempotency-Key for IDEMPOTENCY_KEY_RETENTION_SECONDS;
# after that the key and its body's hash are forgotten (the order stays).
# updated_at is never earlier than created_at, and is indexed where a key is kept
# (ix_orders_updated_at_keyed); the prune sets it to itself so that forgetting a
# key does not count as the order moving.
IDEMPOTENCY_KEYS = Rule(
    "idempotency_keys", ORDERS, ORDERS.c.updated_at, "IDEMPOTENCY_KEY_RETENTION_SECONDS",
    where=(ORDERS.c.idempotency_key.is_not(None),),
    clear={"idempotency_key": None, "request_hash": None,
           "updated_at": ORDERS.c.updated_at})


def request_hash(items, payment):
    """What makes two create requests "the same body"."""
    canonical = json.dumps({"items": items, "payment": payment}, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _views(conn, rows):
    """Orders as the contract shows them, with their lines."""
    if not rows:
        return []
    items = {}
    for line in conn.execute(ITEMS.where(LINES.c.order_id.in_([r.id for r in rows]))):
        items.setdefault(line.order_id, []).append(
            {"product_id": line.product_id, "quantity": line.quantity,
             "unit_price_cents": line.unit_price_cents})
    return [{**row._asdict(), "items": items.get(row.id, [])} for row in rows]


def find_by_key(conn, user_id, key, digest):
    """The order an idempotency key already made, or None; raises on a new body."""
    row = conn.execute(BY_KEY, {"b_user": user_id, "b_key": key}).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request body")
    (order,) = _views(conn, [row])
    order.pop("request_hash")
    return order


def create(session, outbox, user_id, items, card_token, prices, key=None, digest=None):
    """A pending order at `prices`, announced as `order_created`."""
    conn = session.connection()
    lines = sorted(({"product_id": i["product_id"], "quantity": i["quantity"],
                     "unit_price_cents": prices[i["product_id"]]} for i in items),
                   key=lambda line: line["product_id"])
    total = sum(line["quantity"] * line["unit_price_cents"] for line in lines)
    now = utcnow()
    try:
        order_id = conn.execute(CREATE, {
            "user_id": user_id, "status": "pending", "card_token": card_token,
            "total_cents": total, "idempotency_key": key, "request_hash": digest,
            "created_at": now, "updated_at": now}).scalar_one()
    except IntegrityError:
        # the same key raced us and won (or a redelivered request meets its first
        # delivery's order): answer with its order
        session.rollback()
        order = find_by_key(session.connection(), user_id, key, digest)
        if order is None:
            raise  # not the key's constraint
        return order
    conn.execute(ADD_LINES, [{"order_id": order_id, **line} for line in lines])
    outbox.add(session, "order_created", {
        "order_id": order_id, "user_id": user_id, "total_cents": total,
        "lines": [{"product_id": i["product_id"], "quantity": i["quantity"]}
                  for i in items]})
    return {"id": order_id, "user_id": user_id, "status": "pending", "reason": None,
            "total_cents": total, "created_at": now, "updated_at": now, "items": lines}


def get(conn, order_id, owner_id=None):
    """The order; NotFound also when it is not `owner_id`'s."""
    row = conn.execute(BY_ID, {"order_id": order_id}).first()
    if row is None or (owner_id is not None and row.user_id != owner_id):
        raise NotFound(f"order {order_id} not found")
    return _views(conn, [row])[0]


def page(conn, user_id, limit, offset):
    total = conn.scalar(select(func.count()).select_from(ORDERS)
                        .where(ORDERS.c.user_id == user_id))
    rows = conn.execute(select(*VIEW).where(ORDERS.c.user_id == user_id)
                        .order_by(ORDERS.c.created_at.desc(), ORDERS.c.id.desc())
                        .limit(limit).offset(offset)).all()
    return _views(conn, rows), total


def _saga_row(session, order_id):
    row = session.connection().execute(SAGA_BY_ID, {"order_id": order_id}).first()
    if row is None:
        raise NotFound(f"order {order_id} not found")
    return row


def _move(session, order_id, from_status, **values):
    """Apply a transition if the order is still in `from_status` (one or a tuple):
    the order as it is then, or None when it was not in that status."""
    statuses = [from_status] if isinstance(from_status, str) else list(from_status)
    return session.connection().execute(MOVE, {
        "b_id": order_id, "b_from": statuses, "updated_at": utcnow(), **values}).first()


def _announce(session, outbox, event_type, order):
    outbox.add(session, event_type, {"order_id": order.id, "user_id": order.user_id,
                                     "total_cents": order.total_cents,
                                     "reason": order.reason})


def _reject(session, outbox, order_id, reason, from_status="pending", **values):
    # a rejected order will never be charged: its card token goes
    order = _move(session, order_id, from_status, status="rejected", reason=reason,
                  card_token=None, **values)
    if order is not None:
        _announce(session, outbox, "order_rejected", order)
    return order is not None


def on_stock_reserved(session, outbox, order_id):
    order = _move(session, order_id, "pending", stock_state="reserved")
    if order is not None:
        outbox.add(session, "payment_requested", {
            "order_id": order.id, "user_id": order.user_id,
            "amount_cents": order.total_cents, "card_token": order.card_token})
        return
    order = _saga_row(session, order_id)
    if order.status == "rejected":
        # reserved after a timeout rejected the order: have it released again
        _announce(session, outbox, "order_rejected", order)


def on_stock_rejected(session, outbox, order_id):
    _reject(session, outbox, order_id, "insufficient_stock")


def on_payment_captured(session, outbox, order_id):
    # the capture was the token's only use: it is not kept past it
    order = _move(session, order_id, "pending", status="confirmed",
                  payment_state="captured", card_token=None)
    if order is not None:
        _announce(session, outbox, "order_confirmed", order)
        return
    # captured after a timeout rejected the order: have it refunded, once
    order = session.connection().execute(LATE_CAPTURE, {
        "b_id": order_id, "b_now": utcnow()}).first()
    if order is not None:
        _announce(session, outbox, "order_rejected", order)
        return
    _saga_row(session, order_id)  # NotFound for an order this database never had


def on_payment_declined(session, outbox, order_id):
    _reject(session, outbox, order_id, "payment_declined", payment_state="declined")


def cancel(session, outbox, order_id, owner_id=None):
    order = get(session.connection(), order_id, owner_id)
    moved = _move(session, order_id, "confirmed", status="cancelling")
    if moved is None:
        raise NotCancellable(f"order {order_id} is {order['status']}; only a confirmed "
                             "order can be cancelled")
    _announce(session, outbox, "order_cancelling", moved)
    return get(session.connection(), order_id)


def _finish_cancelling(session, outbox, order):
    if order.stock_state == "released" and order.payment_state == "refunded":
        done = _move(session, order.id, "cancelling", status="cancelled")
        if done is not None:
            _announce(session, outbox, "order_cancelled", done)


def on_stock_released(session, outbox, order_id):
    order = _move(session, order_id, "cancelling", stock_state="released")
    if order is not None:
        _finish_cancelling(session, outbox, order)


def on_payment_refunded(session, outbox, order_id):
    order = _move(session, order_id, ("cancelling", "rejected"), payment_state="refunded")
    if order is not None:
        _finish_cancelling(session, outbox, order)


def expire(session, outbox, older_than):
    """Reject orders pending since before `older_than`; nudge stuck cancellations.

    Returns the ids it acted on.
    """
    acted = []
    stuck = session.connection().execute(
        select(ORDERS.c.id).where(ORDERS.c.status.in_(IN_FLIGHT),
                                  ORDERS.c.updated_at < older_than)
        .order_by(ORDERS.c.id).limit(100)).scalars().all()
    for order_id in stuck:
        if _reject(session, outbox, order_id, "timeout"):
            acted.append(order_id)
        else:
            touched = _move(session, order_id, "cancelling")  # touch, then ask again
            if touched is not None:
                _announce(session, outbox, "order_cancelling", touched)
                acted.append(order_id)
    return acted


def saga_of(conn, order_id):
    """Where one order's saga is, for `mesh trace` (mesh.data.sagas)."""
    row = conn.execute(select(ORDERS.c.status, ORDERS.c.reason, ORDERS.c.stock_state,
                              ORDERS.c.payment_state, ORDERS.c.updated_at)
                       .where(ORDERS.c.id == order_id)).first()
    if row is None:
        return None
    reason = f", because {row.reason}" if row.reason else ""
    return {"state": row.status, "settled": row.status not in IN_FLIGHT, "at": row.updated_at,
            "detail": f"stock {row.stock_state}, payment {row.payment_state}{reason}"}


def saga_states():
    """Orders whose saga is running, counted by where it is (for a gauge)."""
    return (select(ORDERS.c.status, ORDERS.c.stock_state, ORDERS.c.payment_state,
                   func.count())
            .where(ORDERS.c.status.in_(IN_FLIGHT))
            .group_by(ORDERS.c.status, ORDERS.c.stock_state, ORDERS.c.payment_state))
