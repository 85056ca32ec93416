"""What a user is told, and when: one notification per domain event.

Functions take the worker's session and speak SQL through its connection; reads
that change nothing take a connection. Notifications come back as contract dicts.
Nothing here commits.
"""
from sqlalchemy import bindparam, delete, exists, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from mesh.data.db import utcnow
from mesh.data.precompiled import precompiled
from services.notifications.models import ForgottenUser, Notification

NOTIFICATIONS = Notification.__table__
FORGOTTEN = ForgottenUser.__table__
IS_FORGOTTEN = select(FORGOTTEN.c.user_id).where(FORGOTTEN.c.user_id == bindparam("b_user"))
VIEW = (NOTIFICATIONS.c.id, NOTIFICATIONS.c.kind, NOTIFICATIONS.c.subject,
        NOTIFICATIONS.c.body, NOTIFICATIONS.c.order_id, NOTIFICATIONS.c.created_at)
# An order's news is claimed by its insert (one_per_order_and_kind): a check before
# it would let two instances handling two announcements at once both find it
# untold. The loser's insert does nothing rather than fail, so the handler's
# transaction, with its inbox row, still commits. News of a forgotten user is
# not kept: the insert's own condition, not a query before it.
NEWS = ("user_id", "kind", "subject", "body", "order_id", "event_id")
UNLESS_FORGOTTEN = select(*(bindparam(name, type_=NOTIFICATIONS.c[name].type)
                            for name in NEWS)).where(
    ~exists().where(FORGOTTEN.c.user_id == bindparam("user_id")))
TELL = {module.dialect.name: precompiled(module.insert(NOTIFICATIONS)
                                         .from_select(NEWS, UNLESS_FORGOTTEN)
                                         .on_conflict_do_nothing())
        for module in (postgresql, sqlite)}

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
    late reply), to two instances at once; the user hears it once.
    """
    conn = session.connection()
    subject, body = MESSAGES[kind]
    values = dict(facts, order_id=order_id)
    conn.execute(TELL[conn.dialect.name], {
        "user_id": user_id, "kind": kind, "order_id": order_id, "event_id": event_id,
        "subject": subject.format(**values), "body": body.format(**values)})


def forget(session, user_id):
    """Remove a deleted user's notifications, and keep none that comes later."""
    conn = session.connection()
    conn.execute(delete(NOTIFICATIONS).where(NOTIFICATIONS.c.user_id == user_id))
    if not conn.scalar(IS_FORGOTTEN, {"b_user": user_id}):
        conn.execute(insert(FORGOTTEN), {"user_id": user_id, "forgotten_at": utcnow()})


def page(conn, user_id, limit, offset):
    total = conn.scalar(select(func.count()).select_from(NOTIFICATIONS)
                        .where(NOTIFICATIONS.c.user_id == user_id))
    rows = conn.execute(select(*VIEW).where(NOTIFICATIONS.c.user_id == user_id)
                        .order_by(NOTIFICATIONS.c.created_at.desc(),
                                  NOTIFICATIONS.c.id.desc())
                        .limit(limit).offset(offset)).all()
    return [row._asdict() for row in rows], total
