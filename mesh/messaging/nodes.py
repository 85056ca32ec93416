"""Which node of a RabbitMQ cluster a process talks to, when AMQP_URI names several.

kombu tries a failover list in its order on every new connection. A node that
hangs (its machine frozen, its VM stopped) still accepts TCP connections, so
each new connection would wait out its connect timeout there before trying the
next node, every time. And a connection that only writes (the mesh's
publishers) never hears that its node has stopped answering: its messages go
into the socket and nowhere.

So each process keeps one view of its nodes. A consumer that loses its
connection (a reset, or missed AMQP heartbeats) reports the node with `lost`:
that node goes to the end of the order every new connection of the process
follows (`ordered`), and every connection of the process still open to it is
dropped at once (`on_lost` callbacks), so the next message goes to a node that
answers instead of waiting for a timeout.

For a while after a loss the cluster is still settling (`settling`): RabbitMQ
notices a lost node within its net_ticktime and only then records the queues'
new leaders, and until it has, a channel that starts publishing to a quorum queue
keeps the lost leader for good (RabbitMQ 3.10: every message it sends there is
refused until that node is back). Publishers ask for confirms meanwhile
(`mesh.messaging.broker`).
"""
import logging
import time
import weakref
from urllib.parse import urlsplit

__all__ = ["address", "ordered", "lost", "on_lost", "last_lost", "settling",
           "SETTLE_SECONDS"]

log = logging.getLogger(__name__)

# three times the net_ticktime the docs ask of every node (10 s): the cluster
# has noticed a lost node and elected its queues' new leaders well within it
SETTLE_SECONDS = 30.0

_lost_at = {}  # "host:port" -> when a connection to it was last lost (monotonic)
_listeners = weakref.WeakSet()


def address(uri_or_connection):
    """"host:port" of one AMQP URI, or of the node a kombu Connection is on, alike
    for both (kombu connects to "localhost" as 127.0.0.1, and an amqps:// URI
    without a port to 5671)."""
    if isinstance(uri_or_connection, str):
        parts = urlsplit(uri_or_connection.strip())
        host = parts.hostname
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    else:
        host = uri_or_connection.hostname
        port = uri_or_connection.port or (5671 if uri_or_connection.ssl else 5672)
    return f"{'127.0.0.1' if host == 'localhost' else host}:{port}"


def ordered(amqp_uri):
    """`amqp_uri` (a `;`-separated failover list) with the nodes this process has
    lost connections to last, the most recently lost at the very end; the others
    keep their given order."""
    entries = [entry.strip() for entry in amqp_uri.split(";")]
    if len(entries) == 1 or not _lost_at:
        return amqp_uri
    return ";".join(sorted(entries, key=lambda entry: _lost_at.get(address(entry), 0.0)))


def lost(where, why):
    """A connection to `where` (an address) was lost: try it last from now on, and
    drop every connection still open to it."""
    first = time.monotonic() - _lost_at.get(where, float("-inf")) > 1.0
    _lost_at[where] = time.monotonic()
    if first:  # several connections notice one failure within moments
        log.warning("lost the broker node at %s (%s); trying the others first", where, why)
    for listener in list(_listeners):
        listener.node_lost(where)


def on_lost(listener):
    """`listener.node_lost(address)` is called whenever a node is lost (held weakly)."""
    _listeners.add(listener)


def last_lost():
    """When (monotonic) a node was last lost; None when none ever was."""
    return max(_lost_at.values(), default=None)


def settling():
    """Whether a node was lost less than SETTLE_SECONDS ago."""
    lost_at = last_lost()
    return lost_at is not None and time.monotonic() - lost_at < SETTLE_SECONDS
