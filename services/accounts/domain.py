"""Accounts rules: who exists, with which role and status; emails are kept lower-cased.

A change that must stop a user's tokens (a new password, a disable, a delete)
bumps the user's `token_version` and is announced by an event in the same
transaction, which every gateway hears to drop what it remembers of the user.
"""
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from contracts.base import normalise_email
from contracts.errors import Conflict, InvalidCredentials, NotFound
from services.accounts.models import User

ACTIVE, DISABLED, DELETED = "active", "disabled", "deleted"
STATUS_EVENTS = {DISABLED: "user_disabled", ACTIVE: "user_enabled"}


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


def get_user(session, user_id, for_update=False):
    """The user, active or disabled; NotFound for an unknown or deleted one."""
    user = session.get(User, user_id, with_for_update=for_update)
    if user is None or user.status == DELETED:
        raise NotFound(f"user {user_id} not found")
    return user


def change_password(session, outbox, user_id, known_hash, new_hash):
    """Replace the password whose hash the caller verified against, `known_hash`:
    a password changed since (another change racing this one) is InvalidCredentials,
    as the current password the caller gave is then wrong."""
    changed = session.execute(
        update(User).where(User.id == user_id, User.status == ACTIVE,
                           User.password_hash == known_hash)
        .values(password_hash=new_hash, token_version=User.token_version + 1))
    if changed.rowcount != 1:
        session.rollback()
        raise InvalidCredentials("wrong password")
    outbox.add(session, "password_changed", {"user_id": user_id})


def set_status(session, outbox, user_id, actor_id, status):
    """Disable or enable a user; the same status again changes nothing."""
    if status == DISABLED and user_id == actor_id:
        raise Conflict("an admin cannot disable their own account")
    user = get_user(session, user_id, for_update=True)
    if user.status == status:
        return user
    user.status = status
    if status == DISABLED:
        user.token_version += 1  # enabling again does not revive these tokens
    outbox.add(session, STATUS_EVENTS[status], {"user_id": user_id})
    return user


def delete_user(session, outbox, user_id, actor_id):
    """Erase a user's personal data and stop their tokens; the row stays (see User)."""
    if user_id == actor_id:
        raise Conflict("an admin cannot delete their own account")
    user = get_user(session, user_id, for_update=True)
    user.status, user.email, user.name, user.password_hash = DELETED, None, "", ""
    user.token_version += 1
    outbox.add(session, "user_deleted", {"user_id": user_id})


def ensure_admin(session, email, password_hash_fn):
    """Create the configured admin when absent (an existing account is left as it is)."""
    if find_by_email(session, email) is not None:
        return False
    try:
        create_user(session, None, email, "Administrator", password_hash_fn(), role="admin")
    except Conflict:  # another instance created it a moment ago
        return False
    return True
