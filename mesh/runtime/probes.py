"""What an orchestrator asks each service on its ops port.

`/health` (liveness) fails when the service's event loop has stalled: a
heartbeat greenthread stamps the time every second, and an age past
STALL_SECONDS means no greenthread has run for that long (a blocking call, a
CPU-bound loop), so restarting is the cure. It fails too when a consumer of the
service's queues has not gone round its loop (kombu's ConsumerMixin does, at
least once a second, while it consumes) for CONSUMER_STALL_SECONDS although the
broker answers a new connection: the consumer is wedged or stuck reconnecting
(a refused declare retried for ever, say), and a new process would consume
again. While the broker itself is down a restart cures nothing, so that alone
never fails liveness (readiness says it). A consumer whose thread dies already
ends the process (nameko kills the container).

`/ready` (readiness) checks what the service needs to do its work: the broker
answers, and its database (when it has one) runs a `SELECT 1`. A result is reused
for a second, as the gateway's is.
"""
import functools
import time

import eventlet
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import Extension
from nameko.messaging import QueueConsumer
from sqlalchemy import text

from mesh.core.metrics import OpsServer
from mesh.data.db import Database
from mesh.messaging.health import broker_unreachable

__all__ = ["Probes", "STALL_SECONDS", "CONSUMER_STALL_SECONDS"]

STALL_SECONDS = 10.0
CONSUMER_STALL_SECONDS = 60.0
BEAT_SECONDS = 1.0
READY_MAX_AGE = 1.0


class Probes(Extension):
    """Registers the service's liveness and readiness checks with its ops server."""

    ops = OpsServer()

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.beat = clock()
        self.cached, self.expires = None, 0.0
        self.consuming = {}  # queue consumer -> when it last went round its loop

    def setup(self):
        self.ops.add_liveness(self.alive)
        self.ops.add_readiness(self.ready)

    def start(self):
        self.beat = self.clock()
        for consumer in self.container.extensions:
            if isinstance(consumer, QueueConsumer) and consumer not in self.consuming:
                self.watch(consumer)
        self.container.spawn_managed_thread(self._heartbeat, identifier="heartbeat")

    def watch(self, consumer):
        """Stamp each round of `consumer`'s loop (its `on_iteration` hook, which
        nameko's QueueConsumer also uses, wrapped on this one instance)."""
        self.consuming[consumer] = self.clock()
        consumer.on_iteration = functools.partial(self._went_round, consumer,
                                                  consumer.on_iteration)

    def _went_round(self, consumer, on_iteration):
        self.consuming[consumer] = self.clock()
        on_iteration()

    def _heartbeat(self):
        while True:
            self.beat = self.clock()
            eventlet.sleep(BEAT_SECONDS)

    def alive(self):
        now = self.clock()
        stalled = now - self.beat
        if stalled > STALL_SECONDS:
            return False, {"event_loop": f"stalled for {stalled:.0f} s"}
        checks = {"event_loop": "ok"}
        if self.consuming:
            idle = now - min(self.consuming.values())
            checks["consumers"] = "ok"
            if idle > CONSUMER_STALL_SECONDS and broker_unreachable(
                    self.container.config[AMQP_URI_CONFIG_KEY], timeout=2.0) is None:
                checks["consumers"] = f"not consuming for {idle:.0f} s, the broker answers"
                return False, checks
        return True, checks

    def ready(self):
        if self.cached is None or self.clock() >= self.expires:
            self.cached = self._check()
            self.expires = self.clock() + READY_MAX_AGE
        return self.cached

    def _check(self):
        checks = {}
        why = broker_unreachable(self.container.config[AMQP_URI_CONFIG_KEY], timeout=2.0)
        checks["broker"] = "ok" if why is None else f"unreachable: {why.split(':')[0]}"
        databases = [d for d in self.container.dependencies if isinstance(d, Database)]
        for database in databases:
            try:
                with database.engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                checks["database"] = "ok"
            except Exception as exc:  # any failure to reach it means "not ready"
                checks["database"] = f"unreachable: {type(exc).__name__}"
        return all(value == "ok" for value in checks.values()), checks
