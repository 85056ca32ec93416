"""The queue consumer of the mesh's RPC and event entrypoints: it drains.

nameko's QueueConsumer leaves its loop, closing its connection, as soon as its
last consumer is cancelled, which is the first thing a stopping container does;
a worker still running then finishes, commits, and finds no connection to
acknowledge its message on. The broker has already given that message to
another instance, which acts on it a second time. This one stays connected after
its consumers are cancelled (so no new message comes) until every message it
handed out has been acknowledged or requeued; the grace of `mesh serve`
(STOP_GRACE_SECONDS) bounds the wait.

Settling a message never raises either: the connection it came on may be gone,
and then the broker has taken it back already.
"""
import logging

from nameko.messaging import QueueConsumer

__all__ = ["DrainingQueueConsumer"]

log = logging.getLogger(__name__)


class DrainingQueueConsumer(QueueConsumer):

    def __init__(self):
        super().__init__()
        self.unsettled = set()  # messages handed to a provider, not yet acked or requeued

    def handle_message(self, provider, body, message):
        self.unsettled.add(message)
        super().handle_message(provider, body, message)

    def ack_message(self, message):
        self._settle(super().ack_message, message)

    def requeue_message(self, message):
        self._settle(super().requeue_message, message)

    def _settle(self, settle, message):
        try:
            settle(message)
        except Exception as exc:  # its channel failed: the broker takes it back
            log.warning("could not settle a message from %s (%s: %s); the broker "
                        "delivers it again", message.delivery_info.get("routing_key"),
                        type(exc).__name__, exc)
        finally:
            self.unsettled.discard(message)

    def on_iteration(self):
        self._cancel_consumers_if_requested()
        if not self._consumers and not self.unsettled:
            self.should_stop = True
