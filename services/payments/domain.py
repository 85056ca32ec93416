"""Payment rules: one payment per order; capture and refund are idempotent per order.

Functions take the worker's session and speak SQL through its connection, like
every saga step; reads that change nothing take a connection. Payments come back
as contract dicts. Nothing here commits.
"""
from sqlalchemy import bindparam, insert, select, update

from contracts.errors import NotFound
from mesh.data.precompiled import precompiled
from services.payments.models import Payment

PAYMENTS = Payment.__table__
PAYMENT = (PAYMENTS.c.id, PAYMENTS.c.order_id, PAYMENTS.c.amount_cents, PAYMENTS.c.status,
           PAYMENTS.c.provider_ref, PAYMENTS.c.created_at, PAYMENTS.c.updated_at)
BY_ORDER = precompiled(select(*PAYMENT).where(PAYMENTS.c.order_id == bindparam("order_id")))
RECORD = precompiled(insert(PAYMENTS).returning(PAYMENTS.c.id))
# A refund is claimed before the provider is asked: the row goes from captured to
# refunded in the handler's transaction, so a second refund of the same payment
# (another instance, at once) waits on the row and then finds nothing to claim.
# If the provider fails, the transaction rolls back and the payment is captured
# again for the retry; the provider's key covers a crash after it paid back.
CLAIM_REFUND = precompiled(update(PAYMENTS).where(PAYMENTS.c.id == bindparam("b_id"),
                                                  PAYMENTS.c.status == "captured")
                           .values(status="refunded"))


def _find(conn, order_id):
    return conn.execute(BY_ORDER, {"order_id": order_id}).first()


def get(conn, order_id):
    payment = _find(conn, order_id)
    if payment is None:
        raise NotFound(f"no payment for order {order_id}")
    return payment._asdict()


def capture(session, outbox, provider, order_id, amount_cents, card_token):
    """Charge an order once; announces `payment_captured` or `payment_declined`."""
    if _find(session.connection(), order_id) is not None:
        return  # already decided; the order saw its event then
    outcome = provider.capture(f"capture-{order_id}", amount_cents, card_token)
    status = "captured" if outcome.ok else "declined"
    payment_id = session.connection().execute(RECORD, {
        "order_id": order_id, "amount_cents": amount_cents, "status": status,
        "provider_ref": outcome.reference, "decline_reason": outcome.reason}).scalar_one()
    if outcome.ok:
        outbox.add(session, "payment_captured", {
            "order_id": order_id, "payment_id": payment_id, "amount_cents": amount_cents})
    else:
        outbox.add(session, "payment_declined",
                   {"order_id": order_id, "reason": outcome.reason})


def refund(session, outbox, provider, order_id, announce_if_done=False):
    """Pay a captured order back once; announces `payment_refunded`."""
    payment = _find(session.connection(), order_id)
    if payment is None or payment.status == "declined":
        return
    if session.connection().execute(CLAIM_REFUND, {"b_id": payment.id}).rowcount:
        outcome = provider.refund(f"refund-{order_id}", payment.provider_ref,
                                  payment.amount_cents)
        if not outcome.ok:
            raise RuntimeError(f"refund of order {order_id} failed: {outcome.reason}")
    elif not announce_if_done:
        return
    outbox.add(session, "payment_refunded", {
        "order_id": order_id, "payment_id": payment.id,
        "amount_cents": payment.amount_cents})
