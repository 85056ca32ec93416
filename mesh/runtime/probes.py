"""What an orchestrator asks each service on its ops port.

`/health` (liveness) fails when the service's event loop has stalled: a
heartbeat greenthread stamps the time every second, and an age past
STALL_SECONDS means no greenthread has run for that long (a blocking call, a
CPU-bound loop), so restarting is the cure. A dead consumer already ends the
process (nameko kills the container), which the supervisor or the kubelet sees.

`/ready` (readiness) checks what the service needs to do its work: the broker
answers, and its database (when it has one) runs a `SELECT 1`. A result is reused
for a second, as the gateway's is.
"""
import time

import eventlet
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import Extension
from sqlalchemy import text

from mesh.core.metrics import OpsServer
from mesh.data.db import Database
from mesh.messaging.health import broker_unreachable

__all__ = ["Probes", "STALL_SECONDS"]

STALL_SECONDS = 10.0
BEAT_SECONDS = 1.0
READY_MAX_AGE = 1.0


class Probes(Extension):
    """Registers the service's liveness and readiness checks with its ops server."""

    ops = OpsServer()

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.beat = clock()
        self.cached, self.expires = None, 0.0

    def setup(self):
        self.ops.add_liveness(self.alive)
        self.ops.add_readiness(self.ready)

    def start(self):
        self.beat = self.clock()
        self.container.spawn_managed_thread(self._heartbeat, identifier="heartbeat")

    def _heartbeat(self):
        while True:
            self.beat = self.clock()
            eventlet.sleep(BEAT_SECONDS)

    def alive(self):
        stalled = self.clock() - self.beat
        if stalled > STALL_SECONDS:
            return False, {"event_loop": f"stalled for {stalled:.0f} s"}
        return True, {"event_loop": "ok"}

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
