"""The accounts database: users with their password hashes and roles."""
from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.data.db import UtcDateTime, utcnow


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('customer', 'admin')", name="role_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default="customer")
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at = mapped_column(UtcDateTime, default=utcnow, nullable=False)

    def to_dict(self):
        return {"id": self.id, "email": self.email, "name": self.name,
                "role": self.role, "created_at": self.created_at}
