"""TLS to the broker: nameko's AMQP_SSL, for the mesh's own connections too.

nameko passes AMQP_SSL to the connections it makes (consumers, its publisher,
`nameko shell`); the platform's own (publishers, presence checks, readiness,
operator tools) are made from an AMQP URI alone. `use_tls(config)`, called where
a process takes its config (`mesh serve`, the `mesh` commands), records the
options for the brokers AMQP_URI names, and `broker_connection` applies them.
"""
from urllib.parse import urlsplit

from kombu import Connection

from mesh.messaging.nodes import ordered

__all__ = ["use_tls", "tls_options", "broker_connection", "bounded"]

_BY_BROKER = {}  # (host, port) -> AMQP_SSL: the same broker, whichever user


def _broker(amqp_uri):
    parts = urlsplit(amqp_uri.split(";")[0].strip())
    return parts.hostname, parts.port


def use_tls(config):
    """Connect with `config`'s AMQP_SSL to each broker its AMQP_URI names."""
    options = config.get("AMQP_SSL")
    for uri in config["AMQP_URI"].split(";"):
        if options:
            _BY_BROKER[_broker(uri)] = options
        else:
            _BY_BROKER.pop(_broker(uri), None)


def tls_options(amqp_uri):
    return _BY_BROKER.get(_broker(amqp_uri))


def broker_connection(amqp_uri, **kwargs):
    """kombu's Connection to `amqp_uri`, over TLS as AMQP_SSL says (`amqps://`
    alone is TLS with kombu's defaults), trying first the nodes this process has
    not lost (mesh.messaging.nodes)."""
    options = tls_options(amqp_uri)
    if options:
        kwargs.setdefault("ssl", options)
    return Connection(ordered(amqp_uri), **kwargs)


def bounded(connection, seconds=5.0):
    """Connect `connection` (kombu's) if it is not, and make no read or write on
    it wait more than `seconds`: a node that hangs answers nothing, and py-amqp
    waits for an answer without a timeout. (Its own read_timeout is a socket
    option that eventlet's non-blocking sockets ignore.)"""
    connection.connection.transport.sock.settimeout(seconds)
    return connection
