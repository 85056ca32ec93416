import base64
import json
import os
import stat
import threading
import time

import jwt
import pytest

from mesh.auth.tokens import InvalidToken, Tokens, signing_key

KEY = "k" * 40


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_token_carries_user_and_role():
    tokens = Tokens(KEY, ttl=60)
    claims = tokens.verify(tokens.issue(7, "admin"))
    assert (claims.user_id, claims.role) == (7, "admin")


def test_expired_token_is_refused():
    tokens = Tokens(KEY, ttl=60)
    with pytest.raises(InvalidToken):
        tokens.verify(tokens.issue(7, "customer", now=time.time() - 3600))


def test_token_signed_with_another_key_is_refused():
    with pytest.raises(InvalidToken):
        Tokens(KEY).verify(Tokens("o" * 40).issue(7, "customer"))


def test_altered_token_is_refused():
    token = Tokens(KEY).issue(7, "customer")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    with pytest.raises(InvalidToken):
        Tokens(KEY).verify(".".join([header, b64(claims), signature]))


def test_alg_none_is_refused():
    now = int(time.time())
    token = ".".join([b64({"alg": "none", "typ": "JWT"}),
                      b64({"sub": "1", "role": "admin", "iat": now, "exp": now + 60}), ""])
    with pytest.raises(InvalidToken):
        Tokens(KEY).verify(token)


def test_token_without_expiry_is_refused():
    token = jwt.encode({"sub": "1", "role": "admin", "iat": int(time.time())}, KEY,
                       algorithm="HS256")
    with pytest.raises(InvalidToken):
        Tokens(KEY).verify(token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 5000])
def test_garbage_is_refused(garbage):
    with pytest.raises(InvalidToken):
        Tokens(KEY).verify(garbage)


def test_development_secret_is_made_once_and_private(tmp_path):
    config = {"JWT_SECRET": None, "MESH_DATA_DIR": str(tmp_path / "data")}
    keys = []
    threads = [threading.Thread(target=lambda: keys.append(signing_key(config)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    path = tmp_path / "data" / "jwt_secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / "data")) == ["jwt_secret"]


def test_configured_secret_wins(tmp_path):
    config = {"JWT_SECRET": KEY, "MESH_DATA_DIR": str(tmp_path)}
    assert signing_key(config) == KEY
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_only_hs256_is_accepted_even_with_the_right_key(algorithm):
    now = int(time.time())
    key = "k" * 64  # long enough for either algorithm
    token = jwt.encode({"sub": "1", "role": "admin", "iat": now, "exp": now + 60}, key,
                       algorithm=algorithm)
    with pytest.raises(InvalidToken):
        Tokens(key).verify(token)


def test_a_verified_token_is_remembered_until_its_own_expiry(monkeypatch):
    tokens = Tokens(KEY, ttl=60)
    token = tokens.issue(7, "customer", now=time.time() - 59)  # one second left
    decoded = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    first, again = tokens.verify(token), tokens.verify(token)
    assert first == again and first.user_id == 7 and len(decoded) == 1
    time.sleep(1.1)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token)  # checked afresh once its exp has passed
    assert len(decoded) == 2


def test_only_good_tokens_are_remembered_and_only_so_many(monkeypatch):
    monkeypatch.setattr("mesh.auth.tokens.VERIFIED_KEPT", 3)
    tokens = Tokens(KEY)
    good = [tokens.issue(user, "customer") for user in range(5)]
    for token in good:
        tokens.verify(token)
    assert list(tokens._verified) == good[2:]  # the latest used
    forged = Tokens("another key " * 4).issue(1, "admin")
    with pytest.raises(InvalidToken):
        tokens.verify(forged)
    altered = good[-1][:-2] + ("AA" if not good[-1].endswith("AA") else "BB")
    with pytest.raises(InvalidToken):
        tokens.verify(altered)
    assert forged not in tokens._verified and altered not in tokens._verified
