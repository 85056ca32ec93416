import threading
import time

import eventlet
from limits.storage import memory as limits_memory
import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from contracts import accounts, inventory
from mesh.auth.tokens import Claims
from mesh.http import HttpError, Route
from mesh.http.limits import RateLimits

LOGIN = Route("POST", "/auth/token", accounts.CONTRACT, "issue_token",
              password_work=True, auth_limit_by="email")
PRODUCTS = Route("GET", "/products", inventory.CONTRACT, "list_products")


def request(address="10.0.0.1"):
    return Request(EnvironBuilder(environ_base={"REMOTE_ADDR": address}).get_environ())


def check(limits, route, request, claims, kwargs=None):
    limits.before_body(route, request, claims)
    if kwargs is not None:
        limits.after_body(route, request, LOGIN.loader.load(kwargs))


def refused(limits, *args):
    with pytest.raises(HttpError) as caught:
        check(limits, *args)
    assert (caught.value.status, caught.value.code) == (429, "rate_limited")
    assert int(caught.value.headers["Retry-After"]) in range(1, 61)
    return caught.value


def test_logins_are_limited_per_address_and_email():
    limits = RateLimits(api="100/60", auth="3/60")
    ann = {"email": "ann@example.com", "password": "x"}
    for _ in range(3):
        check(limits, LOGIN, request(), None, ann)
    # the same account, however its address is written
    for email in ("ANN@example.com", " ann@example.com ", "ann@example.com\u2003"):
        refused(limits, LOGIN, request(), None, {**ann, "email": email})
    # another account from the same address, or the same account from elsewhere
    check(limits, LOGIN, request(), None, {"email": "bob@example.com", "password": "x"})
    check(limits, LOGIN, request("10.0.0.2"), None, ann)


def test_the_api_is_limited_per_user_or_per_address():
    limits = RateLimits(api="2/60", auth="100/60")
    for _ in range(2):
        check(limits, PRODUCTS, request(), None)
    refused(limits, PRODUCTS, request(), None)
    # a signed-in user has an allowance of their own, wherever they come from
    for _ in range(2):
        check(limits, PRODUCTS, request(), Claims(1, "customer"))
    refused(limits, PRODUCTS, request("10.9.9.9"), Claims(1, "customer"))
    check(limits, PRODUCTS, request(), Claims(2, "customer"))


def test_one_account_is_limited_from_every_address_together():
    limits = RateLimits(api="100/60", auth="100/60", auth_account="3/60")
    ann = {"email": "ann@example.com", "password": "x"}
    for n in range(3):
        check(limits, LOGIN, request(f"10.0.1.{n}"), None, ann)
    refused(limits, LOGIN, request("10.0.1.99"), None, ann)


def test_password_work_is_capped_per_address_before_the_body_is_read():
    limits = RateLimits(api="100/60", auth="100/60", auth_address="3/60")
    for n in range(3):
        check(limits, LOGIN, request(), None, {"email": f"u{n}@example.com", "password": "x"})
    refused(limits, LOGIN, request(), None)  # no body needed to be refused
    check(limits, LOGIN, request("10.0.0.2"), None)


UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_an_unreachable_store_closes_by_default():
    limits = RateLimits(api="100/60", auth="3/60", storage_url=UNREACHABLE)
    with pytest.raises(HttpError) as caught:
        check(limits, PRODUCTS, request(), None)
    assert (caught.value.status, caught.value.code) == (503, "service_unavailable")
    assert caught.value.headers["Retry-After"] == "5"


def test_an_unreachable_store_can_be_set_to_let_requests_through(caplog):
    limits = RateLimits(api="1/60", auth="1/60", storage_url=UNREACHABLE, on_error="open")
    for _ in range(3):
        check(limits, PRODUCTS, request(), None)
    assert "not counted" in caplog.text


def test_the_in_memory_store_drops_old_counts_without_a_thread_per_hit(monkeypatch):
    limits = RateLimits(api="3/1", auth="100/60")
    store = limits.limiter.storage
    timers = []

    class CountedTimer(threading.Timer):
        def start(self):
            timers.append(self)
            super().start()

    monkeypatch.setattr(limits_memory.threading, "Timer", CountedTimer)
    for _ in range(3):
        check(limits, PRODUCTS, request(), None)
        eventlet.sleep(0.02)  # limits' own store would find its timer done, and start one
    refused(limits, PRODUCTS, request(), None)
    check(limits, PRODUCTS, request("10.0.0.2"), None)  # another client, seen once
    assert timers == []
    time.sleep(1.05)  # the window moves on, and the next hit finds the expiry due
    check(limits, PRODUCTS, request(), None)
    # the first client's old counts are gone, and the other client with them
    assert [len(entries) for entries in store.events.values()] == [1]
