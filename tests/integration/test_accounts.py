"""The accounts service in a real container on the real broker, over RPC."""
import uuid

import eventlet

import pytest

from contracts.errors import Conflict, InvalidCredentials, InvalidInput, NotFound
from mesh.auth.tokens import Tokens, signing_key
from services.accounts.service import AccountsService


def email():
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def accounts(start_service, rpc_client):
    start_service(AccountsService)
    return rpc_client.accounts


def test_register_and_log_in(accounts, mesh_config):
    address = email()
    user = accounts.register(email=address.upper(), password="correct horse", name="Ann")
    assert user["email"] == address and user["role"] == "customer"
    assert user["created_at"].endswith("Z") and "password" not in str(user)
    token = accounts.issue_token(email=address, password="correct horse")
    claims = Tokens(signing_key(mesh_config)).verify(token["access_token"])
    assert claims.user_id == user["id"]
    assert accounts.get_user(user_id=user["id"]) == user


def test_expected_failures_are_caught_by_class(accounts):
    address = email()
    accounts.register(email=address, password="correct horse", name="Ann")
    with pytest.raises(Conflict):
        accounts.register(email=address, password="correct horse", name="Ann")
    with pytest.raises(InvalidCredentials):
        accounts.issue_token(email=address, password="wrong horse")
    with pytest.raises(NotFound):
        accounts.get_user(user_id=10**9)


def test_bad_arguments_are_typed_with_fields(accounts):
    with pytest.raises(InvalidInput) as caught:
        accounts.register(email="not-an-email", password="short", name="")
    assert set(caught.value.fields) == {"email", "password", "name"}
    with pytest.raises(InvalidInput):
        accounts.get_user(user_id="1")
    with pytest.raises(InvalidInput):
        accounts.get_user(1, 2)
    with pytest.raises(InvalidInput):
        accounts.get_user(user_id=1, extra=True)


def test_positional_arguments_bind_by_name(accounts):
    user = accounts.register(email(), "correct horse", "Pos")
    assert accounts.get_user(user["id"])["id"] == user["id"]


def test_admin_is_created_at_start(start_service, rpc_client, mesh_config):
    address = email()
    start_service(AccountsService, MESH_ADMIN_EMAIL=address,
                  MESH_ADMIN_PASSWORD="admin password")
    for _ in range(50):  # it is created by a worker right after start
        try:
            token = rpc_client.accounts.issue_token(email=address, password="admin password")
            break
        except InvalidCredentials:
            eventlet.sleep(0.1)
    claims = Tokens(signing_key(mesh_config)).verify(token["access_token"])
    assert claims.role == "admin"


def test_lifecycle_over_rpc(accounts, mesh_config):
    """What a gateway route does is the service's rule, whoever calls."""
    import sqlalchemy

    from mesh.data.db import database_url
    from mesh.data.tables import outbox as OUTBOX
    from mesh.testing import wait_until

    address = email()
    user = accounts.register(email=address, password="correct horse", name="Ann")
    assert user["status"] == "active"
    first = accounts.get_access(user_id=user["id"])
    assert first == {"user_id": user["id"], "role": "customer", "status": "active",
                     "token_version": 0}
    with pytest.raises(InvalidCredentials):
        accounts.change_password(user_id=user["id"], current_password="wrong horse",
                                 new_password="battery staple")
    assert accounts.change_password(user_id=user["id"], current_password="correct horse",
                                    new_password="battery staple") == {}
    assert accounts.get_access(user_id=user["id"])["token_version"] == 1
    with pytest.raises(Conflict):
        accounts.disable_user(user_id=user["id"], actor_id=user["id"])
    assert accounts.disable_user(user_id=user["id"], actor_id=10**6)["status"] == "disabled"
    with pytest.raises(InvalidCredentials):  # the right password, a disabled user
        accounts.issue_token(email=address, password="battery staple")
    with pytest.raises(InvalidCredentials):  # nor can a disabled user change it
        accounts.change_password(user_id=user["id"], current_password="battery staple",
                                 new_password="another staple")
    assert accounts.enable_user(user_id=user["id"], actor_id=10**6)["status"] == "active"
    assert accounts.get_access(user_id=user["id"])["token_version"] == 2
    assert accounts.delete_user(user_id=user["id"], actor_id=10**6) == {}
    for lookup in (accounts.get_user, accounts.get_access):
        with pytest.raises(NotFound):
            lookup(user_id=user["id"])
    with pytest.raises(NotFound):
        accounts.enable_user(user_id=user["id"], actor_id=10**6)

    # no gateway runs, so no queue takes the notices: sent, not kept waiting; the
    # relay declared notifications' queues (never started on this vhost) before
    # publishing what they handle, so every event is sent and theirs wait there
    engine = sqlalchemy.create_engine(database_url(mesh_config, "accounts"))

    def unsent():
        with engine.connect() as connection:
            return sorted(connection.scalars(sqlalchemy.select(OUTBOX.c.type).where(
                OUTBOX.c.published_at.is_(None))))

    wait_until(lambda: unsent() == [], what="every event sent")
    from kombu import Connection
    with Connection(mesh_config["AMQP_URI"]) as connection:
        for kind in ("user_registered", "user_deleted"):
            waiting = connection.default_channel.queue_declare(
                f"evt-accounts-{kind}--notifications.on_{kind}", passive=True)
            assert waiting.message_count >= 1
    engine.dispose()
