"""Payment rules: one payment per order; capture and refund are idempotent per order."""
from sqlalchemy import select

from contracts.errors import NotFound
from services.payments.models import Payment


def get(session, order_id):
    payment = session.scalars(select(Payment).where(Payment.order_id == order_id)) \
        .one_or_none()
    if payment is None:
        raise NotFound(f"no payment for order {order_id}")
    return payment


def capture(session, outbox, provider, order_id, amount_cents, card_token):
    """Charge an order once; announces `payment_captured` or `payment_declined`."""
    if session.scalars(select(Payment).where(Payment.order_id == order_id)).first():
        return  # already decided; the order saw its event then
    outcome = provider.capture(f"capture-{order_id}", amount_cents, card_token)
    status = "captured" if outcome.ok else "declined"
    payment = Payment(order_id=order_id, amount_cents=amount_cents, status=status,
                      provider_ref=outcome.reference, decline_reason=outcome.reason)
    session.add(payment)
    session.flush()
    if outcome.ok:
        outbox.add(session, "payment_captured", {
            "order_id": order_id, "payment_id": payment.id, "amount_cents": amount_cents})
    else:
        outbox.add(session, "payment_declined",
                   {"order_id": order_id, "reason": outcome.reason})


def refund(session, outbox, provider, order_id, announce_if_done=False):
    """Pay a captured order back once; announces `payment_refunded`."""
    payment = session.scalars(select(Payment).where(Payment.order_id == order_id)) \
        .one_or_none()
    if payment is None or payment.status == "declined":
        return
    if payment.status == "captured":
        outcome = provider.refund(f"refund-{order_id}", payment.provider_ref,
                                  payment.amount_cents)
        if not outcome.ok:
            raise RuntimeError(f"refund of order {order_id} failed: {outcome.reason}")
        payment.status = "refunded"
    elif not announce_if_done:
        return
    session.flush()
    outbox.add(session, "payment_refunded", {
        "order_id": order_id, "payment_id": payment.id,
        "amount_cents": payment.amount_cents})
