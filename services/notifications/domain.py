"""What a user is told, and when: one notification per domain event."""
from sqlalchemy import func, select

from services.notifications.models import Notification

MESSAGES = {
    "welcome": ("Welcome, {name}", "Your account {email} is ready."),
    "order_confirmed": ("Order {order_id} confirmed",
                        "We have your payment of {total_cents} cents; order {order_id} "
                        "is confirmed."),
    "order_rejected": ("Order {order_id} could not be completed",
                       "Order {order_id} was rejected ({reason}). Any payment taken "
                       "for it is refunded."),
    "order_cancelled": ("Order {order_id} cancelled",
                        "Order {order_id} is cancelled and {total_cents} cents refunded."),
}


def notify(session, event_id, user_id, kind, order_id=None, **facts):
    """Add the notification an event calls for, unless that news was already told.

    An order's saga may announce the same outcome twice (say, a timeout racing a
    late reply); the user hears it once.
    """
    if order_id is not None and session.scalar(select(Notification.id).where(
            Notification.order_id == order_id, Notification.kind == kind)):
        return
    subject, body = MESSAGES[kind]
    values = dict(facts, order_id=order_id)
    session.add(Notification(user_id=user_id, kind=kind, order_id=order_id,
                             event_id=event_id, subject=subject.format(**values),
                             body=body.format(**values)))


def page(session, user_id, limit, offset):
    total = session.scalar(select(func.count()).select_from(Notification)
                           .where(Notification.user_id == user_id))
    items = session.scalars(select(Notification).where(Notification.user_id == user_id)
                            .order_by(Notification.created_at.desc(),
                                      Notification.id.desc())
                            .limit(limit).offset(offset)).all()
    return items, total
