"""The payments database: one payment per order, captured, declined or refunded."""
from sqlalchemy import BigInteger, CheckConstraint, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.data.db import UtcDateTime, utcnow


class Base(DeclarativeBase):
    pass


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("status IN ('captured', 'declined', 'refunded')",
                        name="status_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(Integer, unique=True)
    # up to contracts.base.MAX_TOTAL_CENTS, beyond 32 bits
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    decline_reason: Mapped[str | None] = mapped_column(String(100))
    created_at = mapped_column(UtcDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow,
                               nullable=False)
