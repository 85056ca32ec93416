"""Password change, disable, enable and delete, through real gateways, accounts and
notifications on the real broker: a token stops working at once, in every gateway."""
import uuid

import pytest
import sqlalchemy

from gateway import GatewayService
from mesh.auth.tokens import Tokens, signing_key
from mesh.data.db import database_url
from mesh.data.tables import inbox as INBOX
from mesh.testing import free_port, wait_until
from services.notifications.service import NotificationsService
from tests.integration.conftest import Client
from tests.integration.test_gateway import assert_error

PASSWORD = "correct horse"


@pytest.fixture
def mesh(start_mesh):
    return start_mesh()


def user_of(mesh, token):
    return Tokens(signing_key(mesh.config)).verify(token).user_id


def test_a_password_change_kills_older_tokens(mesh):
    email = mesh.register()
    token, other_session = mesh.token(email), mesh.token(email)
    wrong = mesh("POST", "/api/v1/me/password", token,
                 json={"current_password": "not it at all", "new_password": "battery staple"})
    assert_error(wrong, 401, "invalid_credentials")
    short = mesh("POST", "/api/v1/me/password", token,
                 json={"current_password": PASSWORD, "new_password": "short"})
    assert set(assert_error(short, 422, "validation_error")["fields"]) == {"new_password"}
    assert mesh("GET", "/api/v1/me", token).status_code == 200  # nothing changed yet

    changed = mesh("POST", "/api/v1/me/password", token,
                   json={"current_password": PASSWORD, "new_password": "battery staple"})
    assert changed.status_code == 204 and changed.content == b""
    for old in (token, other_session):
        assert "revoked" in assert_error(mesh("GET", "/api/v1/me", old), 401,
                                         "unauthorized")["message"]
    old_login = mesh("POST", "/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert_error(old_login, 401, "invalid_credentials")
    fresh = mesh.token(email, "battery staple")
    assert mesh("GET", "/api/v1/me", fresh).json()["email"] == email


def test_a_disabled_user_is_refused_until_enabled(mesh):
    admin = mesh.admin_token()
    email = mesh.register()
    token = mesh.token(email)
    user_id = user_of(mesh, token)
    assert mesh("GET", "/api/v1/orders", token).status_code == 200  # remembered as active

    assert_error(mesh("POST", f"/api/v1/users/{user_id}/disable", token), 403, "forbidden")
    disabled = mesh("POST", f"/api/v1/users/{user_id}/disable", admin)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["status"] == "disabled" and disabled.json()["email"] == email
    assert mesh("POST", f"/api/v1/users/{user_id}/disable", admin).json()["status"] == \
        "disabled"  # again: nothing more happens
    assert_error(mesh("GET", "/api/v1/orders", token), 401, "unauthorized")
    login = mesh("POST", "/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    wrong = mesh("POST", "/api/v1/auth/token", json={"email": email, "password": "nope"})
    assert assert_error(login, 401, "invalid_credentials") == {
        **assert_error(wrong, 401, "invalid_credentials"),
        "request_id": login.headers["X-Request-ID"]}

    enabled = mesh("POST", f"/api/v1/users/{user_id}/enable", admin)
    assert enabled.status_code == 200 and enabled.json()["status"] == "active"
    assert_error(mesh("GET", "/api/v1/orders", token), 401, "unauthorized")  # stays dead
    assert mesh("GET", "/api/v1/me", mesh.token(email)).json()["status"] == "active"


def test_an_admin_cannot_disable_or_delete_themselves(mesh):
    admin = mesh.admin_token()
    admin_id = user_of(mesh, admin)
    assert_error(mesh("POST", f"/api/v1/users/{admin_id}/disable", admin), 409, "conflict")
    assert_error(mesh("DELETE", f"/api/v1/users/{admin_id}", admin), 409, "conflict")
    assert mesh("GET", "/api/v1/me", admin).json()["status"] == "active"
    for method, path in (("POST", "/disable"), ("POST", "/enable"), ("DELETE", "")):
        assert_error(mesh(method, f"/api/v1/users/{10**9}{path}", admin), 404, "not_found")
        # beyond what an id column holds on any backend: refused, never a 500
        assert_error(mesh(method, f"/api/v1/users/{2**31}{path}", admin), 422,
                     "validation_error")


def test_a_deleted_user_is_gone_but_their_orders_stay(mesh, rpc_client):
    admin = mesh.admin_token()
    email = mesh.register()
    token = mesh.token(email)
    user_id = user_of(mesh, token)
    product = mesh.product(stock=3)
    order = mesh.order(token, product["id"]).json()
    assert mesh.settled(token, order["id"])["status"] == "confirmed"
    # the welcome and the confirmation
    wait_until(lambda: rpc_client.notifications.list_notifications(
        user_id=user_id, limit=10, offset=0)["total"] == 2, what="two notifications")

    deleted = mesh("DELETE", f"/api/v1/users/{user_id}", admin)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(mesh("GET", "/api/v1/me", token), 401, "unauthorized")
    login = mesh("POST", "/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert_error(login, 401, "invalid_credentials")
    assert_error(mesh("DELETE", f"/api/v1/users/{user_id}", admin), 404, "not_found")
    kept = mesh("GET", f"/api/v1/orders/{order['id']}", admin)
    assert kept.status_code == 200 and kept.json()["status"] == "confirmed"
    wait_until(lambda: rpc_client.notifications.list_notifications(
        user_id=user_id, limit=10, offset=0)["total"] == 0, what="notifications removed")

    again = mesh("POST", "/api/v1/auth/register",
                 json={"email": email, "password": PASSWORD, "name": "Again"})
    assert again.status_code == 201 and again.json()["id"] != user_id
    assert_error(mesh("GET", "/api/v1/me", token), 401, "unauthorized")  # not the new one's


def test_every_gateway_forgets_a_changed_user_at_once(mesh, start_service):
    """Gateway B never served the change: accounts' events tell it, long before
    its USER_CACHE_SECONDS (60 s) would have."""
    other_port = free_port()
    start_service(GatewayService, **{**mesh.config, "GATEWAY_PORT": other_port})
    other = Client(f"http://127.0.0.1:{other_port}", mesh.config)
    admin = mesh.admin_token()
    email, victim = mesh.register(), mesh.register()
    token, victim_token = mesh.token(email), mesh.token(victim)
    for gateway in (mesh, other):  # both remember both users as they are now
        assert gateway("GET", "/api/v1/me", token).status_code == 200
        assert gateway("GET", "/api/v1/me", victim_token).status_code == 200

    assert mesh("POST", "/api/v1/me/password", token, json={
        "current_password": PASSWORD, "new_password": "battery staple"}).status_code == 204
    wait_until(lambda: other("GET", "/api/v1/me", token).status_code == 401, timeout=3,
               what="gateway B refusing the token from before the password change")
    victim_id = user_of(mesh, victim_token)
    assert mesh("POST", f"/api/v1/users/{victim_id}/disable", admin).status_code == 200
    wait_until(lambda: other("GET", "/api/v1/me", victim_token).status_code == 401,
               timeout=3, what="gateway B refusing the disabled user's token")


def test_news_of_a_deleted_user_arriving_late_is_not_kept(start_service, emit_event,
                                                           rpc_client, mesh_config):
    """An order's saga may still announce news after its user was deleted."""
    start_service(NotificationsService)
    user_id = 4242
    engine = sqlalchemy.create_engine(database_url(mesh_config, "notifications"))

    def total():
        return rpc_client.notifications.list_notifications(
            user_id=user_id, limit=10, offset=0)["total"]

    def handled(event_id):
        with engine.connect() as connection:
            return connection.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(
                INBOX).where(INBOX.c.event_id == event_id)) == 1

    emit_event("accounts", "user_registered", {
        "user_id": user_id, "email": f"{uuid.uuid4().hex[:8]}@example.com", "name": "Late"})
    wait_until(lambda: total() == 1, what="the welcome")
    emit_event("accounts", "user_deleted", {"user_id": user_id})
    wait_until(lambda: total() == 0, what="the welcome removed")
    late = emit_event("orders", "order_confirmed", {
        "order_id": 1, "user_id": user_id, "total_cents": 100})
    wait_until(lambda: handled(late), what="the late news handled")
    assert total() == 0
    engine.dispose()
