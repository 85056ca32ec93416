"""Accounts rules: who exists, with which role; emails are kept lower-cased."""
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from contracts.base import normalise_email
from contracts.errors import Conflict, NotFound
from services.accounts.models import User


def create_user(session, outbox, email, name, password_hash, role="customer"):
    """Add a user, announced as `user_registered` (not the admin made at start, when
    `outbox` is None). Conflict when the email is taken."""
    user = User(email=normalise_email(email), name=name, role=role,
                password_hash=password_hash)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"email {user.email} is already registered") from None
    if outbox is not None:
        outbox.add(session, "user_registered",
                   {"user_id": user.id, "email": user.email, "name": user.name})
    return user


def find_by_email(session, email):
    return session.scalars(
        select(User).where(User.email == normalise_email(email))).one_or_none()


def get_user(session, user_id):
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def ensure_admin(session, email, password_hash_fn):
    """Create the configured admin when absent (an existing account is left as it is)."""
    if find_by_email(session, email) is not None:
        return False
    try:
        create_user(session, None, email, "Administrator", password_hash_fn(), role="admin")
    except Conflict:  # another instance created it a moment ago
        return False
    return True
