"""Order rules and the saga's state machine, persisted on the order row.

    pending ──stock reserved──► (payment requested) ──payment captured──► confirmed
       │                                            └─payment declined──► rejected
       ├──stock rejected──────────────────────────────────────────────► rejected
       └──stuck past the timeout──────────────────────────────────────► rejected (timeout)
    confirmed ──cancel──► cancelling ──stock released + payment refunded──► cancelled

Every transition is a conditional UPDATE on the current status, so two
deliveries, two instances or a timeout racing a handler cannot both apply one.
Each records its events in the outbox in the same transaction. Nothing here
commits: the RPC method or the event handler does.
"""
import hashlib
import json

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from contracts.errors import NotFound
from contracts.orders import IdempotencyKeyReused, NotCancellable
from mesh.db import utcnow
from services.orders.models import Order, OrderLine

IN_FLIGHT = ("pending", "cancelling")  # the saga still has steps to take


def request_hash(items, payment):
    """What makes two create requests "the same body"."""
    canonical = json.dumps({"items": items, "payment": payment}, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_by_key(session, user_id, key, digest):
    """The order an idempotency key already made, or None; raises on a new body."""
    order = session.scalars(select(Order).where(
        Order.user_id == user_id, Order.idempotency_key == key)).one_or_none()
    if order is not None and order.request_hash != digest:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request body")
    return order


def create(session, outbox, user_id, items, card_token, prices, key=None, digest=None):
    """A pending order at `prices`, announced as `order_created`."""
    lines = [OrderLine(product_id=i["product_id"], quantity=i["quantity"],
                       unit_price_cents=prices[i["product_id"]]) for i in items]
    order = Order(user_id=user_id, status="pending", card_token=card_token,
                  total_cents=sum(line.quantity * line.unit_price_cents for line in lines),
                  idempotency_key=key, request_hash=digest, lines=lines)
    session.add(order)
    try:
        session.flush()
    except IntegrityError:
        # the same key raced us and won: answer with its order
        session.rollback()
        return find_by_key(session, user_id, key, digest)
    outbox.add(session, "order_created", {
        "order_id": order.id, "user_id": user_id, "total_cents": order.total_cents,
        "lines": [{"product_id": i["product_id"], "quantity": i["quantity"]}
                  for i in items]})
    return order


def get(session, order_id, owner_id=None):
    """The order; NotFound also when it is not `owner_id`'s."""
    order = session.get(Order, order_id)
    if order is None or (owner_id is not None and order.user_id != owner_id):
        raise NotFound(f"order {order_id} not found")
    return order


def page(session, user_id, limit, offset):
    total = session.scalar(select(func.count()).select_from(Order)
                           .where(Order.user_id == user_id))
    items = session.scalars(select(Order).where(Order.user_id == user_id)
                            .order_by(Order.created_at.desc(), Order.id.desc())
                            .limit(limit).offset(offset)).all()
    return items, total


def _move(session, order_id, from_status, **values):
    """Apply a transition if the order is still in `from_status`; True if applied."""
    statuses = (from_status,) if isinstance(from_status, str) else tuple(from_status)
    result = session.execute(update(Order)
                             .where(Order.id == order_id, Order.status.in_(statuses))
                             .values(updated_at=utcnow(), **values))
    session.expire_all()
    return result.rowcount == 1


def _announce(session, outbox, event_type, order):
    outbox.add(session, event_type, {"order_id": order.id, "user_id": order.user_id,
                                     "total_cents": order.total_cents,
                                     "reason": order.reason})


def _reject(session, outbox, order_id, reason, from_status="pending"):
    if _move(session, order_id, from_status, status="rejected", reason=reason):
        _announce(session, outbox, "order_rejected", get(session, order_id))
        return True
    return False


def on_stock_reserved(session, outbox, order_id):
    order = get(session, order_id)
    if _move(session, order_id, "pending", stock_state="reserved"):
        outbox.add(session, "payment_requested", {
            "order_id": order.id, "user_id": order.user_id,
            "amount_cents": order.total_cents, "card_token": order.card_token})
    elif order.status == "rejected":
        # reserved after a timeout rejected the order: have it released again
        _announce(session, outbox, "order_rejected", order)


def on_stock_rejected(session, outbox, order_id):
    _reject(session, outbox, order_id, "insufficient_stock")


def on_payment_captured(session, outbox, order_id):
    if _move(session, order_id, "pending", status="confirmed", payment_state="captured"):
        _announce(session, outbox, "order_confirmed", get(session, order_id))
        return
    order = get(session, order_id)
    if order.status == "rejected":
        # captured after a timeout rejected the order: have it refunded
        _move(session, order_id, "rejected", payment_state="captured")
        _announce(session, outbox, "order_rejected", order)


def on_payment_declined(session, outbox, order_id):
    if _reject(session, outbox, order_id, "payment_declined"):
        _move(session, order_id, "rejected", payment_state="declined")


def cancel(session, outbox, order_id, owner_id=None):
    order = get(session, order_id, owner_id)
    if not _move(session, order_id, "confirmed", status="cancelling"):
        raise NotCancellable(f"order {order_id} is {order.status}; only a confirmed "
                             "order can be cancelled")
    order = get(session, order_id)
    _announce(session, outbox, "order_cancelling", order)
    return order


def _finish_cancelling(session, outbox, order_id):
    order = get(session, order_id)
    if order.stock_state == "released" and order.payment_state == "refunded" and \
            _move(session, order_id, "cancelling", status="cancelled"):
        _announce(session, outbox, "order_cancelled", get(session, order_id))


def on_stock_released(session, outbox, order_id):
    if _move(session, order_id, "cancelling", stock_state="released"):
        _finish_cancelling(session, outbox, order_id)


def on_payment_refunded(session, outbox, order_id):
    if _move(session, order_id, ("cancelling", "rejected"), payment_state="refunded"):
        _finish_cancelling(session, outbox, order_id)


def expire(session, outbox, older_than):
    """Reject orders pending since before `older_than`; nudge stuck cancellations.

    Returns the ids it acted on.
    """
    acted = []
    stuck = session.scalars(select(Order.id).where(
        Order.status.in_(IN_FLIGHT), Order.updated_at < older_than)
        .order_by(Order.id).limit(100)).all()
    for order_id in stuck:
        if _reject(session, outbox, order_id, "timeout"):
            acted.append(order_id)
        elif _move(session, order_id, "cancelling"):  # touch, then ask again
            _announce(session, outbox, "order_cancelling", get(session, order_id))
            acted.append(order_id)
    return acted


def saga_states():
    """Orders whose saga is running, counted by where it is (for a gauge)."""
    return (select(Order.status, Order.stock_state, Order.payment_state, func.count())
            .where(Order.status.in_(IN_FLIGHT))
            .group_by(Order.status, Order.stock_state, Order.payment_state))
