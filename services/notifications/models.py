"""The notifications database: messages per user, one per domain event."""
from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.data.db import UtcDateTime, utcnow


class Base(DeclarativeBase):
    pass


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    order_id: Mapped[int | None] = mapped_column(Integer)
    # the event it reports: a second delivery cannot make a second message
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    created_at = mapped_column(UtcDateTime, default=utcnow, nullable=False)
