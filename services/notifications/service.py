"""The notifications service: tells users what happened, once per event."""
from contracts import accounts, orders
from contracts.base import page_of
from contracts.notifications import CONTRACT
from mesh.messaging.handlers import handle_event
from mesh.messaging.rpc import rpc
from mesh.runtime.service_base import MeshService
from services.notifications import domain
from services.notifications.models import Base


class NotificationsService(MeshService, contract=CONTRACT, models=Base):
    @rpc
    def list_notifications(self, user_id, limit, offset):
        with self.db.reading() as conn:
            return page_of(*domain.page(conn, user_id, limit, offset), limit, offset)

    @handle_event(accounts.CONTRACT, "user_registered")
    def on_user_registered(self, event):
        data = event["data"]
        domain.notify(self.db.session, event["event_id"], data["user_id"], "welcome",
                      name=data["name"], email=data["email"])

    @handle_event(accounts.CONTRACT, "user_deleted")
    def on_user_deleted(self, event):
        domain.forget(self.db.session, event["data"]["user_id"])

    @handle_event(orders.CONTRACT, "order_confirmed")
    def on_order_confirmed(self, event):
        self._order_news(event, "order_confirmed")

    @handle_event(orders.CONTRACT, "order_rejected")
    def on_order_rejected(self, event):
        self._order_news(event, "order_rejected")

    @handle_event(orders.CONTRACT, "order_cancelled")
    def on_order_cancelled(self, event):
        self._order_news(event, "order_cancelled")

    def _order_news(self, event, kind):
        data = event["data"]
        domain.notify(self.db.session, event["event_id"], data["user_id"], kind,
                      order_id=data["order_id"], total_cents=data["total_cents"],
                      reason=data.get("reason"))
