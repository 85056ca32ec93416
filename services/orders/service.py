"""The orders service: create, read and cancel orders; the saga moves them on."""
import datetime as dt
import logging

from nameko.dependency_providers import Config

from contracts.base import page_of
from contracts.inventory import CONTRACT as INVENTORY
from contracts.payments import CONTRACT as PAYMENTS
from contracts.errors import NotFound
from contracts.orders import CONTRACT, UnknownProduct
from mesh.core.config import setting
from mesh.data.db import utcnow
from mesh.data.gauges import DatabaseGauge
from mesh.data.retention import Expiring
from mesh.data.sagas import SagaState
from mesh.messaging.handlers import handle_event
from mesh.messaging.rpc import RequestKey, ServiceRpc, rpc
from mesh.runtime.lifecycle import timer
from mesh.runtime.service_base import MeshService
from services.orders import domain
from services.orders.models import Base

log = logging.getLogger(__name__)


class OrdersService(MeshService, contract=CONTRACT, models=Base):
    config = Config()
    saga_states = DatabaseGauge(
        "mesh_saga_in_flight", "Orders whose saga is running, by status, stock and payment",
        ("status", "stock_state", "payment_state"), domain.saga_states())
    saga = SagaState("order_id", "order_created", domain.saga_of)  # for `mesh trace`
    inventory = ServiceRpc(INVENTORY)
    request_key = RequestKey()
    idempotency_keys = Expiring(domain.IDEMPOTENCY_KEYS)

    @rpc
    def create_order(self, user_id, items, payment, idempotency_key):
        digest = domain.request_hash(items, payment)
        if idempotency_key:
            # a client's retry gets its first order without asking inventory again
            # (a read closed before the call: no transaction stays open across it)
            with self.db.reading() as conn:
                existing = domain.find_by_key(conn, user_id, idempotency_key, digest)
            if existing is not None:
                return existing
        else:
            # without the client's key, the RPC request's own id stops a request
            # redelivered after a crash from making a second order: its insert
            # finds the first one's (domain.create). Redeliveries are rare, so
            # they pay for that check, not every order
            idempotency_key = f"rpc:{self.request_key}"
        try:
            prices = self.inventory.get_prices(
                product_ids=[item["product_id"] for item in items])["prices"]
        except NotFound as exc:
            missing = exc.fields.get("product_ids", [])
            raise UnknownProduct(str(exc), {"items": [
                f"Product {product_id} does not exist." for product_id in missing]}) \
                from None
        return domain.create(self.db.session, self.outbox, user_id, items,
                             payment["card_token"], {int(k): v for k, v in prices.items()},
                             idempotency_key, digest)

    @rpc
    def get_order(self, order_id, user_id):
        with self.db.reading() as conn:
            return domain.get(conn, order_id, user_id)

    @rpc
    def list_orders(self, user_id, limit, offset):
        with self.db.reading() as conn:
            return page_of(*domain.page(conn, user_id, limit, offset), limit, offset)

    @rpc
    def cancel_order(self, order_id, user_id):
        return domain.cancel(self.db.session, self.outbox, order_id, user_id)

    # The saga: each handler moves one order one step.

    @handle_event(INVENTORY, "stock_reserved")
    def on_stock_reserved(self, event):
        domain.on_stock_reserved(self.db.session, self.outbox, event["data"]["order_id"])

    @handle_event(INVENTORY, "stock_rejected")
    def on_stock_rejected(self, event):
        domain.on_stock_rejected(self.db.session, self.outbox, event["data"]["order_id"])

    @handle_event(INVENTORY, "stock_released")
    def on_stock_released(self, event):
        domain.on_stock_released(self.db.session, self.outbox, event["data"]["order_id"])

    @handle_event(PAYMENTS, "payment_captured")
    def on_payment_captured(self, event):
        domain.on_payment_captured(self.db.session, self.outbox,
                                   event["data"]["order_id"])

    @handle_event(PAYMENTS, "payment_declined")
    def on_payment_declined(self, event):
        domain.on_payment_declined(self.db.session, self.outbox,
                                   event["data"]["order_id"])

    @handle_event(PAYMENTS, "payment_refunded")
    def on_payment_refunded(self, event):
        domain.on_payment_refunded(self.db.session, self.outbox,
                                   event["data"]["order_id"])

    @timer(interval=1)
    def expire_stuck_sagas(self):
        timeout = setting(self.config, "SAGA_TIMEOUT_SECONDS")
        cutoff = utcnow() - dt.timedelta(seconds=timeout)
        acted = domain.expire(self.db.session, self.outbox, cutoff)
        self.telemetry.counter(
            "mesh_saga_timeouts", "Order sagas the timeout acted on (rejected, or a "
            "stuck cancellation announced again)").labels(self.telemetry.service).inc(
            len(acted))
        if acted:
            log.warning("saga timeout (%g s) compensated orders %s", timeout, acted)
