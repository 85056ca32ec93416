from argon2 import PasswordHasher

from mesh.auth.passwords import DUMMY_HASH, hash_password, verify_password


def test_hash_is_salted_and_verifies():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("$argon2id$")
    assert verify_password(first, "correct horse")
    assert not verify_password(first, "wrong horse")


def test_odd_hashes_do_not_raise():
    assert not verify_password("not-a-hash", "x")


def test_dummy_hash_costs_what_a_real_one_does():
    # unknown-email logins verify against it: same parameters, same time
    assert not PasswordHasher().check_needs_rehash(DUMMY_HASH)


def test_password_work_beyond_the_cap_is_refused_as_busy():
    import eventlet
    import pytest

    from contracts.errors import Busy
    from mesh.auth.passwords import PasswordSlots

    slots = PasswordSlots(concurrency=1, wait=0.05)
    hashed = slots.hash("correct horse")
    with slots._turn():  # the one slot is taken
        with pytest.raises(Busy):
            slots.verify(hashed, "correct horse")
        eventlet.sleep(0)
    assert slots.verify(hashed, "correct horse")
