"""The inventory service: products, stock and the reservations the order saga needs."""
from contracts.inventory import CONTRACT
from mesh.db import Database
from mesh.rpc import rpc
from services.inventory import domain
from services.inventory.models import Base


class InventoryService:
    name = "inventory"
    contract = CONTRACT

    db = Database(Base)

    @rpc
    def create_product(self, sku, name, price_cents, stock):
        return domain.create_product(self.db.session, sku, name, price_cents,
                                     stock).to_dict()

    @rpc
    def get_product(self, product_id):
        return domain.get_product(self.db.session, product_id).to_dict()

    @rpc
    def list_products(self, limit, offset):
        items, total = domain.list_products(self.db.session, limit, offset)
        return {"items": [p.to_dict() for p in items], "total": total,
                "limit": limit, "offset": offset}

    @rpc
    def restock(self, product_id, quantity):
        return domain.restock(self.db.session, product_id, quantity).to_dict()

    @rpc
    def reserve_stock(self, order_id, lines):
        return domain.reserve(self.db.session, order_id, lines).to_dict()

    @rpc
    def release_stock(self, order_id):
        return domain.release(self.db.session, order_id).to_dict()

    @rpc
    def commit_stock(self, order_id):
        return domain.commit(self.db.session, order_id).to_dict()
