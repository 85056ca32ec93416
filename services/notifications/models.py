"""The notifications database: messages per user, one per domain event."""
from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.data.db import UtcDateTime, partial_index, utcnow


class Base(DeclarativeBase):
    pass


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # an order's news (kind) is told once, however often or at once it is
        # announced; a user's welcome has no order, and each user gets theirs
        partial_index("one_per_order_and_kind", "order_id", "kind", unique=True,
                      where="order_id IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    order_id: Mapped[int | None] = mapped_column(Integer)
    # the event it reports: a second delivery cannot make a second message
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    created_at = mapped_column(UtcDateTime, default=utcnow, nullable=False)


class ForgottenUser(Base):
    """A deleted user: their notifications are gone, and news about them that
    arrives later (an order's saga still running) is not kept either."""

    __tablename__ = "forgotten_users"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    forgotten_at = mapped_column(UtcDateTime, default=utcnow, nullable=False)
