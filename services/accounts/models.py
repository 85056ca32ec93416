"""The accounts database: users with their password hashes, roles and status."""
from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.data.db import UtcDateTime, utcnow


class Base(DeclarativeBase):
    pass


class User(Base):
    """A deleted user stays as a row without personal data (email NULL, so the
    address can register again): its id is never given to anyone else, so a
    token it held can never pass for another user's."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('customer', 'admin')", name="role_known"),
        CheckConstraint("status IN ('active', 'disabled', 'deleted')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default="customer")
    password_hash: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active",
                                        server_default="active")
    # a token carries the generation it was issued in; bumping it (a password
    # change, a disable, a delete) kills every token issued before
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at = mapped_column(UtcDateTime, default=utcnow, nullable=False)

    def to_dict(self):
        return {"id": self.id, "email": self.email, "name": self.name,
                "role": self.role, "status": self.status, "created_at": self.created_at}

    def access(self):
        return {"user_id": self.id, "role": self.role, "status": self.status,
                "token_version": self.token_version}
