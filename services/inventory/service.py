"""The inventory service: products, stock and the order saga's reservations."""
import contextlib
import logging

from contracts import orders
from contracts.base import page_of
from contracts.errors import Conflict, NotFound
from contracts.inventory import CONTRACT
from mesh.messaging.handlers import handle_event
from mesh.messaging.rpc import RequestKey, claim_request, rpc
from mesh.runtime.service_base import MeshService
from services.inventory import domain
from services.inventory.models import Base

log = logging.getLogger(__name__)


class InventoryService(MeshService, contract=CONTRACT, models=Base):
    request_key = RequestKey()

    @rpc
    def create_product(self, sku, name, price_cents, stock):
        return domain.create_product(self.db.session, sku, name, price_cents, stock)

    @rpc
    def get_product(self, product_id):
        with self.db.reading() as conn:
            return domain.get_product(conn, product_id)

    @rpc
    def get_prices(self, product_ids):
        with self.db.reading() as conn:
            prices = domain.get_prices(conn, product_ids)
        return {"prices": {str(k): v for k, v in prices.items()}}

    @rpc
    def list_products(self, limit, offset):
        with self.db.reading() as conn:
            return page_of(*domain.list_products(conn, limit, offset), limit, offset)

    @rpc
    def restock(self, product_id, quantity):
        # a request redelivered after a crash must not add the units twice
        if not claim_request(self.db.session, self.request_key):
            return domain.get_product(self.db.session.connection(), product_id)
        return domain.restock(self.db.session, product_id, quantity)

    @rpc
    def reserve_stock(self, order_id, lines):
        reservation, _ = domain.reserve(self.db.session, order_id, lines)
        return reservation

    @rpc
    def release_stock(self, order_id):
        reservation, _ = domain.release(self.db.session, order_id)
        return reservation

    @rpc
    def commit_stock(self, order_id):
        return domain.commit(self.db.session, order_id)

    # The order saga.

    @handle_event(orders.CONTRACT, "order_created")
    def on_order_created(self, event):
        domain.on_order_created(self.db.session, self.outbox, event["data"]["order_id"],
                                event["data"]["lines"])

    @handle_event(orders.CONTRACT, "order_confirmed")
    def on_order_confirmed(self, event):
        try:
            domain.on_order_confirmed(self.db.session, event["data"]["order_id"])
        except Conflict as exc:  # released by a timeout meanwhile: nothing to sell
            log.warning("order %s confirmed but %s", event["data"]["order_id"], exc)

    @handle_event(orders.CONTRACT, "order_rejected")
    def on_order_rejected(self, event):
        # NotFound: the order was rejected before anything was reserved
        with contextlib.suppress(NotFound):
            domain.release(self.db.session, event["data"]["order_id"])

    @handle_event(orders.CONTRACT, "order_cancelling")
    def on_order_cancelling(self, event):
        domain.on_order_cancelling(self.db.session, self.outbox, event["data"]["order_id"])
