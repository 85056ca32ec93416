"""The operator page without a mesh: what it renders (and escapes), how it reads
its parts, and who it lets in (werkzeug's test client on its WSGI app)."""
import html.parser
import sys
import types

import eventlet
import pytest
from werkzeug.test import Client

from mesh.auth.tokens import Claims, Tokens
from mesh.core.metrics import OpsServer
from mesh.http.errors import HttpError
from mesh.ops import dlq, page_state, page_view
from mesh.ops.page import COOKIE, PageApp
from mesh.ops.page_state import Part, Query

EVIL = "<script data-x>alert(\"1\")</script>'&"
KEY = "unit-test-key-" + "k" * 32


class Tags(html.parser.HTMLParser):
    """The start tags and the text of a document, as a browser would parse them."""

    def __init__(self, document):
        super().__init__(convert_charrefs=True)
        self.tags, self.texts = [], []
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)

    @property
    def text(self):
        return "".join(self.texts)


def evil_parts():
    status = {"ok": False, "broker": f"unreachable: {EVIL}", "services": {
        EVIL: {"instances": 1, "ready": False, "queues": {EVIL: 3},
               "dead_letters": {EVIL: 2}, "outbox": {"backlog": 4,
                                                      "oldest_age_seconds": 1.5},
               "problems": [EVIL]}}}
    groups = [{"fingerprint": "0123456789ab", "queue": EVIL, "error_type": EVIL,
               "message": EVIL, "count": 2, "first_seen": EVIL, "last_seen": EVIL,
               "request_ids": [EVIL, "req-1"]}]
    story = {"request_id": EVIL, "where": EVIL, "steps": [
        {"service": EVIL, "kind": EVIL, "name": EVIL, "outcome": EVIL, "at": EVIL,
         "after_seconds": 0.25, "detail": EVIL},
        {"service": "orders", "kind": "saga", "name": "order", "outcome": "confirmed",
         "at": "2024-01-01T00:00:00+00:00", "after_seconds": 1.0, "detail": None}]}
    circuits = {EVIL: {"state": EVIL, "present": True, "broker_down": False,
                       "in_flight": 0}}
    return {"status": Part(status, None), "dead_letters": Part(groups, None),
            "trace": Part(story, None), "circuits": Part(circuits, None)}


def test_every_value_shown_is_escaped():
    document = page_view.page(evil_parts(), (EVIL, EVIL), Claims(1, "admin"))
    parsed = Tags(document)
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert scripts == [{"src": "/ops/page.js", "defer": None}]
    assert not [tag for tag, attrs in parsed.tags if "data-x" in attrs]
    # shown as text, every time it was given: a table cell, a step, a link, an input
    assert parsed.text.count(EVIL) >= 15
    assert "<script data-x>" not in document
    inputs = [attrs["value"] for tag, attrs in parsed.tags if tag == "input" and
              attrs.get("name") in ("trace", "order")]
    assert inputs == [EVIL, EVIL]
    links = [attrs["href"] for tag, attrs in parsed.tags if tag == "a"]
    assert "/ops?trace=req-1" in links
    assert all(link.startswith("/ops?trace=") for link in links)
    classes = " ".join(attrs.get("class", "") for _, attrs in parsed.tags)
    assert "<" not in classes and "kind-other" in classes and "kind-saga" in classes


def test_a_part_that_failed_is_shown_as_its_error_and_the_others_as_usual():
    parts = {**evil_parts(), "dead_letters": Part(None, f"OSError: {EVIL}")}
    del parts["trace"]
    parsed = Tags(page_view.page(parts, (None, None), Claims(1, "admin")))
    assert f"OSError: {EVIL}" in parsed.text
    assert "Queue depths" in parsed.text and "Trace" not in parsed.text


def test_the_login_form_escapes_its_message():
    parsed = Tags(page_view.login(EVIL))
    assert EVIL in parsed.text
    assert [attrs for tag, attrs in parsed.tags if tag == "script"] == [
        {"src": "/ops/page.js", "defer": None}]


@pytest.mark.parametrize("args, query", [
    ({}, Query(None, None, None)),
    ({"trace": " req-1.a_B "}, Query("req-1.a_B", None, None)),
    ({"order": "42"}, Query(None, 42, None)),
    ({"trace": "", "order": " 7 "}, Query(None, 7, None)),
])
def test_what_a_search_asks_for(args, query):
    assert page_state.query_of(args) == query


@pytest.mark.parametrize("args", [{"trace": EVIL}, {"trace": "x" * 65},
                                  {"order": "4e2"}, {"order": "1" * 19}])
def test_a_search_for_neither_a_request_nor_an_order_is_refused(args):
    query = page_state.query_of(args)
    assert query.refused and query.asked and query.request_id is None


@pytest.fixture
def fakes(monkeypatch):
    """`status.gather`, `dlq.groups` and `mesh.ops.trace` replaced, recording calls."""
    calls = {}
    trace = types.ModuleType("mesh.ops.trace")

    class UnknownRequest(Exception):
        pass

    def fake_trace(config, request_id=None, *, order_id=None, log_files=()):
        calls["trace"] = (config["AMQP_URI"], request_id, order_id)
        if request_id == "nobody":
            raise UnknownRequest("no service knows request nobody")
        return {"request_id": request_id or "r-order", "steps": [], "where": "done"}

    trace.trace, trace.UnknownRequest = fake_trace, UnknownRequest
    monkeypatch.setitem(sys.modules, "mesh.ops.trace", trace)
    monkeypatch.setattr(sys.modules["mesh.ops"], "trace", trace, raising=False)

    def gather(config):
        calls["status"] = config["AMQP_URI"]
        return {"ok": True, "broker": "ok", "services": {}}

    def groups(amqp_uri, queues):
        calls["dead_letters"] = (amqp_uri, queues)
        return []

    monkeypatch.setattr(page_state.status, "gather", gather)
    monkeypatch.setattr(dlq, "groups", groups, raising=False)
    monkeypatch.setattr(dlq, "handler_queues", lambda config: ["q1", "q2"])
    return calls


def identities_config(tmp_path):
    return {"AMQP_URI": "pyamqp://admin:secret@broker:5672/mesh", "BROKER_IDENTITIES": True,
            "BROKER_USER_PREFIX": "mesh-", "BROKER_PASSWORDS": {"operator": "op-pass"},
            "MESH_DATA_DIR": str(tmp_path)}


def test_parts_are_read_as_the_operators_read_them(fakes, tmp_path):
    operator = "pyamqp://mesh-operator:op-pass@broker:5672/mesh"
    guard = types.SimpleNamespace(state="open", present=True, broker_down=False,
                                  in_flight=2)
    parts = page_state.collect(identities_config(tmp_path), {"accounts": guard},
                               Query("req-1", None, None))
    assert fakes == {"status": operator, "dead_letters": (operator, ["q1", "q2"]),
                     "trace": (operator, "req-1", None)}
    assert parts["trace"] == Part({"request_id": "req-1", "steps": [], "where": "done"},
                                  None)
    assert parts["circuits"].value == {"accounts": {
        "state": "open", "present": True, "broker_down": False, "in_flight": 2}}
    assert "trace" not in page_state.collect(identities_config(tmp_path), {},
                                             Query(None, None, None))


def test_an_unknown_request_or_a_refused_search_is_said_in_the_trace_part(fakes, tmp_path):
    config = identities_config(tmp_path)
    unknown = page_state.collect(config, {}, Query("nobody", None, None))["trace"]
    assert unknown == Part(None, "no service knows request nobody")
    fakes.pop("trace")
    refused = page_state.collect(config, {}, Query(None, None, "not a request id"))
    assert refused["trace"] == Part(None, "not a request id") and "trace" not in fakes
    page_state.collect(config, {}, Query(None, 42, None))
    assert fakes["trace"][1:] == (None, 42)


def test_a_part_that_fails_or_hangs_leaves_the_others(fakes, monkeypatch, tmp_path):
    def hangs(amqp_uri, queues):
        eventlet.sleep(5)

    def fails(config):
        raise ConnectionRefusedError(EVIL)

    monkeypatch.setattr(dlq, "groups", hangs)
    monkeypatch.setattr(page_state.status, "gather", fails)
    parts = page_state.collect(identities_config(tmp_path), {}, Query("req-1", None, None),
                               seconds=0.2)
    assert parts["dead_letters"] == Part(None, "did not answer within 0.2 s")
    assert parts["status"] == Part(None, f"ConnectionRefusedError: {EVIL}")
    assert parts["trace"].error is None


# --- who gets in -------------------------------------------------------------

DISABLED_ADMIN = 13


def check(claims, request_id):
    if claims.user_id == DISABLED_ADMIN:  # as the gateway's KnownUsers refuses one
        raise HttpError(401, "unauthorized", "the token's user is disabled")


@pytest.fixture
def app():
    tokens = Tokens(KEY)
    collected = []

    def collect(query):
        collected.append(query)
        parts = evil_parts()
        del parts["trace"]
        return parts

    client = Client(PageApp(tokens, check, collect, 600))
    client.collected = collected
    client.token = tokens.issue
    return client


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_without_a_token_a_browser_goes_to_the_login_form_and_curl_gets_401(app):
    browser = app.get("/ops", headers=BROWSER)
    assert browser.status_code == 303 and browser.headers["Location"] == "/ops/login"
    curl = app.get("/ops")
    assert curl.status_code == 401 and curl.headers["WWW-Authenticate"] == "Bearer"
    assert curl.mimetype == "text/plain"
    form = app.get("/ops/login", headers=BROWSER)
    assert form.status_code == 200 and 'name="token"' in form.text


def test_an_admin_token_sees_the_page_with_its_security_headers(app):
    page = app.get("/ops?trace=req-1", headers=bearer(app.token(1, "admin")))
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"].startswith(
        "default-src 'self'; script-src 'self'")
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert app.collected == [Query("req-1", None, None)]


@pytest.mark.parametrize("headers", [{}, BROWSER])
def test_a_customer_gets_403_in_plain_words(app, headers):
    response = app.get("/ops", headers={**headers, **bearer(app.token(2, "customer"))})
    assert response.status_code == 403 and response.mimetype == "text/plain"
    assert response.text == "403 this needs the admin role\n"
    assert app.collected == []


@pytest.mark.parametrize("token", ["garbage", Tokens("another-key-" + "z" * 32).issue(
    1, "admin"), Tokens(KEY).issue(1, "admin", now=0)])
def test_a_bad_token_gets_401(app, token):
    response = app.get("/ops", headers=bearer(token))
    assert response.status_code == 401 and app.collected == []


def test_a_disabled_admin_gets_401_or_the_login_form(app):
    token = app.token(DISABLED_ADMIN, "admin")
    assert app.get("/ops", headers=bearer(token)).status_code == 401
    app.set_cookie(COOKIE, token, path="/ops")
    response = app.get("/ops", headers=BROWSER)
    assert response.status_code == 303 and response.headers["Location"] == "/ops/login"
    assert f"{COOKIE}=;" in response.headers["Set-Cookie"]  # the stale cookie goes
    login = app.post("/ops/login", data={"token": token})
    assert login.status_code == 401 and "disabled" in login.text
    assert "Set-Cookie" not in login.headers


def test_logging_in_keeps_the_token_in_a_strict_http_only_cookie(app):
    token = app.token(1, "admin")
    login = app.post("/ops/login", data={"token": f" {token}\n"},
                     headers={"Origin": "http://localhost"})
    assert login.status_code == 303 and login.headers["Location"] == "/ops"
    cookie = login.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}={token};")
    for part in ("HttpOnly", "SameSite=Strict", "Path=/ops", "Max-Age=600"):
        assert part in cookie
    assert app.get("/ops", headers=BROWSER).status_code == 200
    logout = app.post("/ops/logout")
    assert logout.status_code == 303 and f"{COOKIE}=;" in logout.headers["Set-Cookie"]
    assert app.get("/ops", headers=BROWSER).status_code == 303


def test_a_login_from_another_origin_or_of_a_customer_is_refused(app):
    for origin in ("http://evil.example", "http://localhost.evil.example", "null"):
        cross = app.post("/ops/login", data={"token": app.token(1, "admin")},
                         headers={"Origin": origin})
        assert cross.status_code == 403 and "Set-Cookie" not in cross.headers
    customer = app.post("/ops/login", data={"token": app.token(2, "customer")})
    assert customer.status_code == 403 and "Set-Cookie" not in customer.headers
    bad = app.post("/ops/login", data={"token": EVIL})
    assert bad.status_code == 401 and "invalid or expired" in bad.text
    assert "<script data-x>" not in bad.text
    huge = app.post("/ops/login", data={"token": "x" * 20_000})
    assert huge.status_code == 413


def test_assets_and_unknown_paths(app):
    script = app.get("/ops/page.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert "auto-refresh" in script.text
    assert app.get("/ops/page.css").mimetype == "text/css"
    assert app.get("/ops/nothing").status_code == 404
    assert app.delete("/ops").status_code == 405


def test_the_ops_server_hands_a_page_its_paths_and_keeps_its_own():
    server = OpsServer()
    server.container = types.SimpleNamespace(service_name="gateway")

    def page(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"page"]

    server.add_page("/ops", page)
    client = Client(server.app)
    assert client.get("/ops").data == client.get("/ops/x").data == b"page"
    assert client.get("/health").json["status"] == "ok"
    assert client.get("/opsx").status_code == 404
    for taken in ("/health", "/", "metrics"):
        with pytest.raises(ValueError):
            server.add_page(taken, page)
