"""The `notifications` service: messages to users, one per domain event."""
from marshmallow import Schema, validate

from contracts.base import Int, Method, Page, PageArgs, ServiceContract, Text, UtcDateTime

__all__ = ["CONTRACT", "Notification", "NotificationPage", "KINDS"]

KINDS = ("welcome", "order_confirmed", "order_rejected", "order_cancelled")


class Notification(Schema):
    id = Int(required=True)
    kind = Text(required=True, validate=validate.OneOf(KINDS))
    subject = Text(required=True)
    body = Text(required=True)
    order_id = Int(required=True, allow_none=True)
    created_at = UtcDateTime(required=True)


NotificationPage = Page(Notification)


class ListNotificationsArgs(PageArgs):
    user_id = Int(required=True)


CONTRACT = ServiceContract(
    service="notifications",
    methods={
        "list_notifications": Method(ListNotificationsArgs, NotificationPage, (),
                                     "A user's notifications, newest first.",
                                     idempotent=True),
    },
)
