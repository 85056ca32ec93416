"""Stock nameko, written the nameko-examples way: what the mesh is measured against.

``nameko run --config bench/stock.yaml bench.stock_service`` with nameko's
defaults (10 workers, publisher confirms, kombu's JSON), nameko-sqlalchemy's
`Database` and a marshmallow schema, as nameko-examples' orders service has them.
"""
from marshmallow import Schema, fields
from nameko.rpc import rpc
from nameko_sqlalchemy import Database
from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer, default=0)
    created_at = mapped_column(DateTime, nullable=False)


class ProductSchema(Schema):
    id = fields.Integer()
    sku = fields.String()
    name = fields.String()
    price_cents = fields.Integer()
    stock = fields.Integer()
    created_at = fields.DateTime()


class NotFound(Exception):
    pass


class StockService:
    name = "stock"

    db = Database(Base)

    @rpc
    def echo(self, **kwargs):
        return kwargs

    @rpc
    def get_product(self, product_id):
        product = self.db.session.get(Product, product_id)
        if product is None:
            raise NotFound(f"product {product_id} not found")
        return ProductSchema().dump(product)
