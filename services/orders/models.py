"""The orders database: orders, their lines and the saga's state."""
from sqlalchemy import (BigInteger, CheckConstraint, ForeignKey, Integer, String,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.data.db import UtcDateTime, partial_index, utcnow


class Base(DeclarativeBase):
    pass



class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="one_order_per_key"),
        CheckConstraint("status IN ('pending', 'confirmed', 'rejected', 'cancelling', "
                        "'cancelled')", name="status_known"),
        # orders whose Idempotency-Key is still kept: the few that retention looks
        # at, among every older order whose key it has forgotten
        partial_index("ix_orders_updated_at_keyed", "updated_at",
                      where="idempotency_key IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reason: Mapped[str | None] = mapped_column(String(32))
    # up to contracts.base.MAX_TOTAL_CENTS, beyond 32 bits
    total_cents: Mapped[int] = mapped_column(BigInteger)
    # until the payment is captured or the order rejected, then NULL
    card_token: Mapped[str | None] = mapped_column(String(80))
    # saga progress: where the stock and the money are
    stock_state: Mapped[str] = mapped_column(String(16), default="none")
    payment_state: Mapped[str] = mapped_column(String(16), default="none")
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at = mapped_column(UtcDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow,
                               nullable=False, index=True)


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)
