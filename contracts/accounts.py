"""The `accounts` service: users, password hashes, roles; authentication."""
from marshmallow import Schema, validate

from contracts.base import (EmailAddress, Event, Int, Method, ServiceContract, Text,
                            UtcDateTime)
from contracts.errors import Busy, Conflict, InvalidCredentials, InvalidInput, NotFound

__all__ = ["CONTRACT", "ROLES", "User", "RegisterArgs", "IssueTokenArgs", "Token",
           "GetUserArgs", "UserRegistered"]

ROLES = ("customer", "admin")


class User(Schema):
    id = Int(required=True)
    email = EmailAddress(required=True)
    name = Text(required=True)
    role = Text(required=True, validate=validate.OneOf(ROLES))
    created_at = UtcDateTime(required=True)


class RegisterArgs(Schema):
    email = EmailAddress(required=True, validate=validate.Length(max=254))
    password = Text(required=True, load_only=True,
                             validate=validate.Length(min=8, max=128))
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
    user_id = Int(required=True)


class UserRegistered(Schema):
    user_id = Int(required=True)
    email = EmailAddress(required=True)
    name = Text(required=True)


CONTRACT = ServiceContract(
    service="accounts",
    methods={
        "register": Method(
            RegisterArgs, User, (InvalidInput, Conflict, Busy),
            "Create a customer; the email is stored lower-cased."),
        "issue_token": Method(
            IssueTokenArgs, Token, (InvalidInput, InvalidCredentials, Busy),
            "Exchange an email and password for a signed, expiring bearer token."),
        "get_user": Method(GetUserArgs, User, (InvalidInput, NotFound),
                           "One user by id.", idempotent=True),
    },
    events=[
        Event("user_registered", UserRegistered,
              doc="A customer registered."),
    ],
)
