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

__all__ = ["use_tls", "tls_options", "broker_connection", "let_go"]

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


class _Bounded(Connection):
    """kombu's Connection, whose socket waits at most `socket_timeout` seconds for
    any read or write once connected: a node that hangs answers nothing, and
    py-amqp waits for an answer (a declare, a confirm, a polite close) without a
    timeout. (py-amqp's own read_timeout is a socket option that eventlet's
    non-blocking sockets ignore.) Its clones, kombu's pools among them, keep it."""

    socket_timeout = 5.0

    def _connection_factory(self):
        connection = super()._connection_factory()
        connection.transport.sock.settimeout(self.socket_timeout)
        return connection


def broker_connection(amqp_uri, socket_timeout=None, **kwargs):
    """kombu's Connection to `amqp_uri`, over TLS as AMQP_SSL says (`amqps://`
    alone is TLS with kombu's defaults), trying first the nodes this process has
    not lost (mesh.messaging.nodes), no wait on it longer than `socket_timeout`
    (5 s unless given)."""
    options = tls_options(amqp_uri)
    if options:
        kwargs.setdefault("ssl", options)
    connection = _Bounded(ordered(amqp_uri), **kwargs)
    if socket_timeout is not None:
        connection.socket_timeout = socket_timeout
    return connection


def let_go(connection):
    """Drop `connection` (kombu's, or the py-amqp one under it) without a word to
    the broker, which may not answer one: not the AMQP goodbye, nor TLS's (closing
    a TLS socket waits for the broker's close_notify for as long as the socket
    may wait)."""
    # py-amqp's has no `_connection`: it is its own
    raw = getattr(connection, "_connection", connection)
    # py-amqp's `transport` property would connect one not yet connected
    sock = getattr(getattr(raw, "_transport", None), "sock", None)
    if sock is not None:
        try:
            sock.settimeout(0)
        except OSError:
            pass
    try:
        connection.collect()
    except Exception:  # dropping what already failed
        pass
