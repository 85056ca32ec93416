"""The inventory database: products, their orderable stock and reservations."""
from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.data.db import UtcDateTime, utcnow


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        # `stock` is what can still be ordered; the check backs up the
        # conditional updates in domain.py.
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price_cents > 0", name="price_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer, default=0)
    created_at = mapped_column(UtcDateTime, default=utcnow, nullable=False)


class Reservation(Base):
    """One order's claim on stock; its status moves reserved → committed → released."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("status IN ('reserved', 'rejected', 'committed', 'released')",
                        name="status_known"),
    )

    order_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16))
    # comma-separated product ids that lacked stock, for a rejected reservation
    short_product_ids: Mapped[str] = mapped_column(String(1024), default="")
    created_at = mapped_column(UtcDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow,
                               nullable=False)


class ReservationLine(Base):
    __tablename__ = "reservation_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    order_id: Mapped[int] = mapped_column(
        ForeignKey("reservations.order_id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
