"""The gateway's memory of token users: what it refuses, and what it forgets."""
import types

import pytest

from contracts.errors import NotFound
from mesh.auth.tokens import Claims
from mesh.http.auth import KnownUsers
from mesh.http.errors import HttpError

ACTIVE = {"user_id": 7, "role": "customer", "status": "active", "token_version": 0}


def known_users(**config):
    users = KnownUsers()
    users.container = types.SimpleNamespace(config=config)
    users.setup()
    return users


class Accounts:
    """What accounts answers for user 7, counting the lookups."""

    def __init__(self, answer=ACTIVE):
        self.answer, self.calls = answer, 0

    def __call__(self):
        self.calls += 1
        if self.answer is None:
            raise NotFound("user 7 not found")
        return dict(self.answer)


def refused(users, claims, lookup):
    with pytest.raises(HttpError) as caught:
        users.require(claims, lookup)
    assert caught.value.status == 401
    return caught.value.message


def test_a_user_is_asked_for_once_until_forgotten():
    users, accounts = known_users(), Accounts()
    claims = Claims(7, "customer", 0)
    users.require(claims, accounts)
    users.require(claims, accounts)
    assert accounts.calls == 1
    accounts.answer = {**ACTIVE, "token_version": 1}  # the password changed
    users.forget(7)
    assert "revoked" in refused(users, claims, accounts)
    users.require(Claims(7, "customer", 1), accounts)  # a token from after the change
    assert accounts.calls == 2


@pytest.mark.parametrize("answer, claims, reason", [
    ({**ACTIVE, "status": "disabled"}, Claims(7, "customer", 0), "disabled"),
    ({**ACTIVE, "role": "customer"}, Claims(7, "admin", 0), "revoked"),
    ({**ACTIVE, "token_version": 3}, Claims(7, "customer", 2), "revoked"),
    (None, Claims(7, "customer", 0), "no longer exists"),
])
def test_what_is_refused(answer, claims, reason):
    assert reason in refused(known_users(), claims, Accounts(answer))


def test_an_answer_read_across_a_forget_is_used_but_not_remembered():
    users = known_users()

    def racing_lookup():  # the change's event arrives while accounts answers
        users.forget(7)
        return dict(ACTIVE)

    users.require(Claims(7, "customer", 0), racing_lookup)
    assert 7 not in users.seen


def test_a_cache_of_zero_seconds_asks_every_time():
    users, accounts = known_users(USER_CACHE_SECONDS=0), Accounts()
    for _ in range(3):
        users.require(Claims(7, "customer", 0), accounts)
    assert accounts.calls == 3


def test_past_its_bound_the_least_recently_seen_user_goes(monkeypatch):
    monkeypatch.setattr(KnownUsers, "MAX_REMEMBERED", 2)
    users, lookups = known_users(), []

    def lookup_of(user_id):
        def lookup():
            lookups.append(user_id)
            return {**ACTIVE, "user_id": user_id}
        return lookup

    for user_id in (1, 2, 1, 3, 1, 2):  # 3 pushes out 2, not 1 (seen more lately)
        users.require(Claims(user_id, "customer", 0), lookup_of(user_id))
    assert lookups == [1, 2, 3, 2]


def test_forgetting_everyone_asks_again_and_a_lookup_across_it_is_not_kept():
    users, accounts = known_users(), Accounts()
    users.require(Claims(7, "customer", 0), accounts)
    users.forget_everyone()
    users.require(Claims(7, "customer", 0), accounts)
    assert accounts.calls == 2

    def racing_lookup():
        users.forget_everyone()
        return dict(ACTIVE)

    users.require(Claims(8, "customer", 0), racing_lookup)
    assert 8 not in users.seen


def test_the_gateway_forgets_one_user_on_an_event_and_everyone_after_a_gap():
    from nameko.testing.services import worker_factory

    from gateway import GatewayService

    users, accounts = known_users(), Accounts()
    gateway = worker_factory(GatewayService, known_users=users)
    users.require(Claims(7, "customer", 0), accounts)
    gateway.forget_user({"data": {"user_id": 8}})
    assert 7 in users.seen
    gateway.forget_user({"data": {"user_id": 7}})
    assert 7 not in users.seen
    users.require(Claims(7, "customer", 0), accounts)
    gateway.forget_user(None)  # reconnected: events may have been missed
    assert 7 not in users.seen
