import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from contracts import accounts, inventory
from mesh.http import HttpError, Route
from mesh.http.limits import RateLimits
from mesh.tokens import Claims

LOGIN = Route("POST", "/auth/token", accounts.CONTRACT, "issue_token",
              auth_limit_by="email")
PRODUCTS = Route("GET", "/products", inventory.CONTRACT, "list_products")


def request(address="10.0.0.1"):
    return Request(EnvironBuilder(environ_base={"REMOTE_ADDR": address}).get_environ())


def refused(limits, *args):
    with pytest.raises(HttpError) as caught:
        limits.check(*args)
    assert (caught.value.status, caught.value.code) == (429, "rate_limited")
    assert int(caught.value.headers["Retry-After"]) in range(1, 61)
    return caught.value


def test_logins_are_limited_per_address_and_email():
    limits = RateLimits(api="100/60", auth="3/60")
    ann = {"email": "ann@example.com", "password": "x"}
    for _ in range(3):
        limits.check(LOGIN, request(), None, ann)
    refused(limits, LOGIN, request(), None, {**ann, "email": "ANN@example.com"})
    # another account from the same address, or the same account from elsewhere
    limits.check(LOGIN, request(), None, {"email": "bob@example.com", "password": "x"})
    limits.check(LOGIN, request("10.0.0.2"), None, ann)


def test_the_api_is_limited_per_user_or_per_address():
    limits = RateLimits(api="2/60", auth="100/60")
    for _ in range(2):
        limits.check(PRODUCTS, request(), None)
    refused(limits, PRODUCTS, request(), None)
    # a signed-in user has an allowance of their own, wherever they come from
    for _ in range(2):
        limits.check(PRODUCTS, request(), Claims(1, "customer"))
    refused(limits, PRODUCTS, request("10.9.9.9"), Claims(1, "customer"))
    limits.check(PRODUCTS, request(), Claims(2, "customer"))
