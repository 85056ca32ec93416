import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import text

from contracts.errors import Conflict, InvalidCredentials, NotFound
from mesh.auth.passwords import PasswordSlots
from mesh.auth.tokens import Tokens
from services.accounts.service import AccountsService

TOKENS = Tokens("k" * 40, ttl=600)


class FakeDb:
    def __init__(self, session):
        self.session = session


@pytest.fixture
def service(migrated_session):
    return worker_factory(AccountsService, db=FakeDb(migrated_session("accounts")),
                          tokens=TOKENS, passwords=PasswordSlots(concurrency=4, wait=1))


def test_register_lowercases_email_and_makes_customers(service):
    user = service.register("Ann@Example.COM", "correct horse", "Ann")
    assert user["email"] == "ann@example.com" and user["role"] == "customer"
    with pytest.raises(Conflict):
        service.register("ann@example.com", "another one", "Ann 2")


def test_token_for_the_right_password_only(service):
    user = service.register("bob@example.com", "correct horse", "Bob")
    token = service.issue_token("BOB@example.com", "correct horse")
    assert token["token_type"] == "bearer" and token["expires_in"] == 600
    assert TOKENS.verify(token["access_token"]).user_id == user["id"]
    with pytest.raises(InvalidCredentials) as wrong_password:
        service.issue_token("bob@example.com", "wrong horse")
    with pytest.raises(InvalidCredentials) as unknown_email:
        service.issue_token("nobody@example.com", "correct horse")
    assert str(wrong_password.value) == str(unknown_email.value)


def test_passwords_are_stored_hashed(service):
    service.register("cat@example.com", "correct horse", "Cat")
    stored = service.db.session.execute(text("select password_hash from users")).scalar()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


def test_get_user(service):
    user = service.register("dan@example.com", "correct horse", "Dan")
    assert service.get_user(user["id"])["email"] == "dan@example.com"
    with pytest.raises(NotFound):
        service.get_user(999)


def test_admin_is_created_once(service):
    service.config = {"MESH_ADMIN_EMAIL": "Root@Example.com",
                      "MESH_ADMIN_PASSWORD": "admin password"}
    service.ensure_admin()
    service.ensure_admin()
    token = service.issue_token("root@example.com", "admin password")
    assert TOKENS.verify(token["access_token"]).role == "admin"


class CountingSlots(PasswordSlots):
    hashed = 0

    def hash(self, password):
        CountingSlots.hashed += 1
        return super().hash(password)


def test_a_taken_email_is_refused_before_any_hashing(migrated_session):
    service = worker_factory(AccountsService, db=FakeDb(migrated_session("accounts")),
                             tokens=TOKENS, passwords=CountingSlots(concurrency=4, wait=1))
    service.register("dup@example.com", "correct horse", "Dup")
    CountingSlots.hashed = 0
    with pytest.raises(Conflict):
        service.register("dup@example.com", "correct horse", "Dup again")
    assert CountingSlots.hashed == 0
