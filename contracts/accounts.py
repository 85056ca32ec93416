"""The `accounts` service: users, password hashes, roles; authentication."""
from marshmallow import Schema, validate

from contracts.base import (EmailAddress, Event, Id, Int, Method, Nothing,
                            ServiceContract, Text, UtcDateTime)
from contracts.errors import Busy, Conflict, InvalidCredentials, InvalidInput, NotFound

__all__ = ["CONTRACT", "ROLES", "STATUSES", "User", "RegisterArgs", "IssueTokenArgs",
           "Token", "GetUserArgs", "Access", "ChangePasswordArgs", "AdminActionArgs",
           "UserRegistered", "UserChanged"]

ROLES = ("customer", "admin")
STATUSES = ("active", "disabled")


class User(Schema):
    id = Int(required=True)
    email = EmailAddress(required=True)
    name = Text(required=True)
    role = Text(required=True, validate=validate.OneOf(ROLES))
    status = Text(required=True, validate=validate.OneOf(STATUSES))
    created_at = UtcDateTime(required=True)


def _password(**kwargs):
    return Text(required=True, load_only=True, validate=validate.Length(min=8, max=128),
                **kwargs)


class RegisterArgs(Schema):
    email = EmailAddress(required=True, validate=validate.Length(max=254))
    password = _password()
    name = Text(required=True, validate=validate.Length(min=1, max=100))


class IssueTokenArgs(Schema):
    email = EmailAddress(required=True, check_format=False,
                         validate=validate.Length(min=1, max=254))
    password = Text(required=True, load_only=True,
                    validate=validate.Length(min=1, max=1024))


class Token(Schema):
    access_token = Text(required=True)
    token_type = Text(required=True, validate=validate.Equal("bearer"))
    expires_in = Int(required=True)


class GetUserArgs(Schema):
    user_id = Id(required=True)


class Access(Schema):
    """What decides whether a user's token still works: the gateway compares the
    token's role and generation (`token_version`) with these."""
    user_id = Int(required=True)
    role = Text(required=True, validate=validate.OneOf(ROLES))
    status = Text(required=True, validate=validate.OneOf(STATUSES))
    token_version = Int(required=True)


class ChangePasswordArgs(Schema):
    user_id = Id(required=True)
    # any length up to a bound: an old password may predate today's rules
    current_password = Text(required=True, load_only=True,
                            validate=validate.Length(min=1, max=1024))
    new_password = _password()


class AdminActionArgs(Schema):
    user_id = Id(required=True)
    actor_id = Id(required=True)  # the admin asking: never themselves


class UserRegistered(Schema):
    user_id = Int(required=True)
    email = EmailAddress(required=True)
    name = Text(required=True)


class UserChanged(Schema):
    user_id = Int(required=True)


CONTRACT = ServiceContract(
    service="accounts",
    methods={
        "register": Method(
            RegisterArgs, User, (InvalidInput, Conflict, Busy),
            "Create a customer; the email is stored lower-cased."),
        "issue_token": Method(
            IssueTokenArgs, Token, (InvalidInput, InvalidCredentials, Busy),
            "Exchange an email and password for a signed, expiring bearer token. "
            "A disabled user is refused like a wrong password."),
        "get_user": Method(GetUserArgs, User, (InvalidInput, NotFound),
                           "One user by id.", idempotent=True),
        "get_access": Method(
            GetUserArgs, Access, (InvalidInput, NotFound),
            "Whether a user's tokens may still work: NotFound once deleted.",
            idempotent=True),
        "change_password": Method(
            ChangePasswordArgs, Nothing, (InvalidInput, InvalidCredentials, NotFound, Busy),
            "Replace the caller's password; every token issued before stops working."),
        "disable_user": Method(
            AdminActionArgs, User, (InvalidInput, NotFound, Conflict),
            "Stop a user's tokens and logins until enabled again (not the actor's own)."),
        "enable_user": Method(
            AdminActionArgs, User, (InvalidInput, NotFound),
            "Let a disabled user log in again; tokens from before the disable stay dead."),
        "delete_user": Method(
            AdminActionArgs, Nothing, (InvalidInput, NotFound, Conflict),
            "Remove a user (not the actor): personal data erased, email free again, "
            "tokens dead; orders and payments are kept, notifications removed."),
    },
    events=[
        Event("user_registered", UserRegistered,
              doc="A customer registered."),
        Event("password_changed", UserChanged, notice=True,
              doc="A user changed their password: tokens issued before are dead."),
        Event("user_disabled", UserChanged, notice=True,
              doc="An admin disabled a user: their tokens and logins are refused."),
        Event("user_enabled", UserChanged, notice=True,
              doc="An admin enabled a disabled user again."),
        Event("user_deleted", UserChanged,
              doc="An admin deleted a user: forget what you keep about them "
                  "beyond records the business must keep."),
    ],
)
