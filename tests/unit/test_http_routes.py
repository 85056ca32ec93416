import datetime
import json

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from contracts import accounts, inventory
from gateway import ROUTES
from mesh.auth.tokens import Claims, Tokens
from mesh.http import ADMIN, PUBLIC, USER, HttpError, Route
from mesh.http.auth import authenticate
from mesh.http.errors import MAX_BODY_BYTES, json_response
from mesh.http.server import request_id_from

RESTOCK = Route("POST", "/products/<int:product_id>/restock", inventory.CONTRACT,
                "restock", access=ADMIN)
LIST = Route("GET", "/products", inventory.CONTRACT, "list_products")
ME = Route("GET", "/me", accounts.CONTRACT, "get_user", access=USER,
           identity={"user_id": "user_id"})


def request(method="POST", body=None, content_type="application/json", **kwargs):
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    req = Request(EnvironBuilder(method=method, data=data, content_type=content_type,
                                 **kwargs).get_environ())
    req.max_content_length = MAX_BODY_BYTES
    return req


def failure(call):
    with pytest.raises(HttpError) as caught:
        call()
    return caught.value


def test_body_and_path_make_the_arguments():
    kwargs = RESTOCK.arguments(request(body={"quantity": 3}), {"product_id": 9}, None)
    assert kwargs == {"product_id": 9, "quantity": 3}


def test_body_may_not_override_the_path():
    error = failure(lambda: RESTOCK.arguments(
        request(body={"quantity": 3, "product_id": 1}), {"product_id": 9}, None))
    assert (error.status, error.code) == (422, "validation_error")
    assert error.fields == {"product_id": ["Unknown field."]}


def test_identity_comes_from_the_token_only():
    claims = Claims(user_id=5, role="customer")
    assert ME.arguments(request("GET"), {}, claims) == {"user_id": 5}
    error = failure(lambda: ME.arguments(request("GET", query_string="user_id=1"), {},
                                         claims))
    assert error.status == 422


@pytest.mark.parametrize("body,content_type,status,code", [
    ('{"quantity": 3}', "text/plain", 415, "unsupported_media_type"),
    ('{"quantity": 3}', None, 415, "unsupported_media_type"),
    ('{"quantity": ', "application/json", 400, "malformed_json"),
    (b'{"quantity": "\xff"}', "application/json", 400, "malformed_json"),
    ('{"quantity": NaN}', "application/json", 400, "malformed_json"),
    ("[" * 5000 + "]" * 5000, "application/json", 400, "malformed_json"),
    ("[1, 2]", "application/json", 422, "validation_error"),
    ('{"quantity": 0}', "application/json", 422, "validation_error"),
    ('{"quantity": true}', "application/json", 422, "validation_error"),
    ('{"quantity": "3"}', "application/json", 422, "validation_error"),
    ('{"quantity": 3, "extra": 1}', "application/json", 422, "validation_error"),
    ("{}", "application/json", 422, "validation_error"),
])
def test_bad_bodies(body, content_type, status, code):
    error = failure(lambda: RESTOCK.arguments(request(body=body, content_type=content_type),
                                              {"product_id": 1}, None))
    assert (error.status, error.code) == (status, code)
    if status == 422:
        assert error.fields


def test_a_body_over_the_route_s_limit_is_413_before_it_is_parsed():
    body = json.dumps({"quantity": 1, "pad": "x" * RESTOCK.max_body})
    error = failure(lambda: RESTOCK.arguments(request(body=body), {"product_id": 1}, None))
    assert (error.status, error.code) == (413, "payload_too_large")
    assert "16 KiB" in error.message


def test_an_error_body_stays_small_however_many_fields_are_wrong():
    body = json.dumps({f"u{n}": 1 for n in range(1000)} | {"quantity": 1})
    error = failure(lambda: RESTOCK.arguments(request(body=body), {"product_id": 1}, None))
    assert error.status == 422 and len(error.fields) == 21
    assert error.fields["_more"] == ["980 more field(s) not shown"]
    assert len(json.dumps(error.fields)) < 2000


def test_body_over_a_mebibyte_is_413():
    body = json.dumps({"quantity": 1, "pad": "x" * MAX_BODY_BYTES})
    error = failure(lambda: RESTOCK.arguments(request(body=body), {"product_id": 1}, None))
    assert (error.status, error.code) == (413, "payload_too_large")


def test_query_strings_become_integers():
    assert LIST.arguments(request("GET", query_string="limit=5&offset=10"), {}, None) \
        == {"limit": 5, "offset": 10}
    assert LIST.arguments(request("GET"), {}, None) == {"limit": 20, "offset": 0}


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "offset=-1",
                                   "limit=1.5", "colour=red"])
def test_bad_query_strings(query):
    error = failure(lambda: LIST.arguments(request("GET", query_string=query), {}, None))
    assert error.status == 422


TOKENS = Tokens("k" * 40)


@pytest.mark.parametrize("header,status,code", [
    (None, 401, "unauthorized"),
    ("Basic dXNlcjpwYXNz", 401, "unauthorized"),
    ("Bearer ", 401, "unauthorized"),
    ("Bearer not.a.token", 401, "unauthorized"),
    ("Bearer " + Tokens("o" * 40).issue(1, "admin"), 401, "unauthorized"),
    ("Bearer " + TOKENS.issue(1, "customer"), 403, "forbidden"),
])
def test_admin_routes_refuse(header, status, code):
    headers = {"Authorization": header} if header else {}
    error = failure(lambda: authenticate(request("GET", headers=headers), ADMIN, TOKENS))
    assert (error.status, error.code) == (status, code)
    if status == 401:
        assert error.headers["WWW-Authenticate"].startswith("Bearer")


def test_roles_that_pass():
    admin = {"Authorization": "Bearer " + TOKENS.issue(1, "admin")}
    assert authenticate(request("GET", headers=admin), ADMIN, TOKENS).role == "admin"
    assert authenticate(request("GET", headers=admin), USER, TOKENS).user_id == 1
    assert authenticate(request("GET"), PUBLIC, TOKENS) is None


@pytest.mark.parametrize("header,kept", [
    ("abc-123_X.y", True), ("a" * 64, True), ("a" * 65, False), ("", False),
    ("has space", False), ("new\nline", False), ("ü", False), (None, False),
])
def test_request_ids(header, kept):
    rid = request_id_from(header)
    assert (rid == header) is kept
    assert len(rid) in range(1, 65)


def test_json_nesting_is_limited():
    deep = "[" * 33 + "]" * 33
    error = failure(lambda: RESTOCK.arguments(request(body='{"quantity": %s}' % deep),
                                              {"product_id": 1}, None))
    assert (error.status, error.code) == (400, "malformed_json")
    assert "nested" in error.message
    fine = '{"quantity": 1, "x": %s}' % ("[" * 30 + "]" * 30)
    error = failure(lambda: RESTOCK.arguments(request(body=fine), {"product_id": 1}, None))
    assert error.status == 422  # deep enough to parse, then refused as unknown field


def test_a_timed_out_write_tells_the_client_how_to_retry_it():
    create_order = next(r for r in ROUTES if r.rpc == "create_order")
    assert "same Idempotency-Key" in create_order.timeout_advice
    assert "check before you retry" in RESTOCK.timeout_advice
    assert LIST.timeout_advice == "try again shortly"


def test_a_service_calls_only_the_methods_it_declared():
    import types

    import pytest

    from contracts import inventory
    from mesh.messaging.rpc import ServiceRpc

    rpc = ServiceRpc(inventory.CONTRACT, methods=["get_prices"])
    rpc.calls = {"inventory": types.SimpleNamespace(policy=types.SimpleNamespace(timeout=1))}
    rpc.exchange = None  # what setup gives it: no call goes out here
    proxy = rpc.proxy(types.SimpleNamespace(), inventory.CONTRACT)
    assert proxy.get_prices.name == "get_prices"
    with pytest.raises(AttributeError, match="not among the calls this service declared"):
        proxy.reserve_stock
    with pytest.raises(AttributeError, match="declares no RPC method"):
        proxy.get_prizes


def test_a_route_that_changes_access_forgets_its_user_after_the_call_only():
    from contracts.errors import NotFound

    disable = next(route for route in ROUTES if route.rpc == "disable_user")
    made, forgotten = [], []

    class Accounts:
        def disable_user(self, **kwargs):
            made.append(kwargs)
            if kwargs["user_id"] == 404:
                raise NotFound("no such user")
            return {"id": kwargs["user_id"]}

        get_user = disable_user

    class Users:
        def forget(self, user_id):
            forgotten.append((user_id, len(made)))

    rpcs = {"accounts": Accounts()}
    assert disable.call(rpcs, {"user_id": 7, "actor_id": 1}, Users()) == {"id": 7}
    assert forgotten == [(7, 1)]  # after the call was made
    with pytest.raises(NotFound):  # nothing changed: nothing to forget
        disable.call(rpcs, {"user_id": 404, "actor_id": 1}, Users())
    assert ME.call(rpcs, {"user_id": 5}, Users()) == {"id": 5}
    assert forgotten == [(7, 1)]


@pytest.mark.parametrize("payload", [
    {"name": "caf\u00e9", "stock": 8, "price": "9.99", "tags": [], "note": None},
    {"lone": "\ud800"},  # orjson refuses these three: the standard library writes them
    {"big": 2 ** 70},
    {1: "a key that is not a string"},
])
def test_json_bodies_are_compact_and_read_back_as_written(payload):
    body = json_response(payload).get_data()
    assert b", " not in body and b": " not in body
    assert json.loads(body) == json.loads(json.dumps(payload))


def test_json_bodies_are_utf_8_and_refuse_what_they_always_refused():
    assert "café".encode() in json_response({"name": "café"}).get_data()
    with pytest.raises(TypeError):  # a service's raw datetime is a bug: a 500
        json_response({"at": datetime.datetime(2026, 12, 6)})
