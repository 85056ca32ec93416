"""The payments service: captures and refunds through a payment provider."""
from nameko.extensions import DependencyProvider

from contracts import orders
from contracts.payments import CONTRACT
from mesh.messaging.handlers import handle_event
from mesh.messaging.rpc import rpc
from mesh.runtime.service_base import MeshService
from services.payments import domain
from services.payments.models import Base
from services.payments.provider import SimulatedProvider


class Provider(DependencyProvider):
    """The payment provider; swap `SimulatedProvider` for a real one here."""

    def setup(self):
        self.provider = SimulatedProvider()

    def get_dependency(self, worker_ctx):
        return self.provider


class PaymentsService(MeshService, contract=CONTRACT, models=Base):
    provider = Provider()

    @rpc
    def get_payment(self, order_id):
        with self.db.reading() as conn:
            return domain.get(conn, order_id)

    @handle_event(orders.CONTRACT, "payment_requested")
    def on_payment_requested(self, event):
        data = event["data"]
        domain.capture(self.db.session, self.outbox, self.provider, data["order_id"],
                       data["amount_cents"], data["card_token"])

    @handle_event(orders.CONTRACT, "order_rejected")
    def on_order_rejected(self, event):
        domain.refund(self.db.session, self.outbox, self.provider,
                      event["data"]["order_id"])

    @handle_event(orders.CONTRACT, "order_cancelling")
    def on_order_cancelling(self, event):
        # a repeated request must hear "refunded" again, or the saga stalls
        domain.refund(self.db.session, self.outbox, self.provider,
                      event["data"]["order_id"], announce_if_done=True)
