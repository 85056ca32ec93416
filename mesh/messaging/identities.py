"""Broker identities: who each process is to RabbitMQ.

With BROKER_IDENTITIES on, each service, the gateway and the operators'
commands connect as a RabbitMQ user of their own, `<BROKER_USER_PREFIX><name>`
(`mesh-orders`, `mesh-gateway`, `mesh-operator`), whose permissions
`mesh broker setup` derives from the contracts (mesh.ops.grants). AMQP_URI then
names only the broker, the vhost and, for `mesh broker setup`, an administrator:
each process puts its own user and password in its place. Off, everyone is
AMQP_URI's user.
"""
from urllib.parse import quote, urlsplit, urlunsplit

from mesh.core.config import setting
from mesh.core.secrets import kept_secret

__all__ = ["OPERATOR", "user_name", "password", "identity_uri", "as_identity"]

OPERATOR = "operator"  # `mesh status`, `mesh call`, `mesh shell`, `mesh dlq`


def user_name(config, identity):
    return setting(config, "BROKER_USER_PREFIX") + identity


def password(config, identity):
    """BROKER_PASSWORDS[identity], else a development password made once and kept
    in MESH_DATA_DIR (so `mesh up` and the services it starts agree on it)."""
    given = (setting(config, "BROKER_PASSWORDS") or {}).get(identity)
    return given or kept_secret(config["MESH_DATA_DIR"], f"broker_password_{identity}")


def _with_login(uri, user, secret):
    parts = urlsplit(uri)
    where = parts.netloc.rpartition("@")[2]
    login = f"{quote(user, safe='')}:{quote(secret, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{login}@{where}"))


def identity_uri(config, identity):
    """AMQP_URI (each broker of a failover list) with `identity`'s user and password."""
    user, secret = user_name(config, identity), password(config, identity)
    return ";".join(_with_login(uri.strip(), user, secret)
                    for uri in config["AMQP_URI"].split(";"))


def as_identity(config, identity):
    """`config` as `identity` connects with it: its own AMQP_URI when identities are on."""
    if not setting(config, "BROKER_IDENTITIES"):
        return config
    return {**config, "AMQP_URI": identity_uri(config, identity)}
