"""Run one service in this process (what `mesh up` starts for each service)."""
import gc
import logging
import logging.config
import os
import signal
import sys

import eventlet
from nameko.exceptions import ConfigurationError
from nameko.runners import ServiceRunner

from mesh.core import codec, logs
from mesh.core.config import database_setting
from mesh.core.services import import_service
from mesh.data import budget, migrations
from mesh.data.db import make_engine
from mesh.messaging.health import broker_refusal
from mesh.messaging.identities import as_identity
from mesh.messaging.topology import declares_exchanges
from mesh.runtime.container import CONTAINER_CLASS
from mesh.runtime.replicas import ops_port

__all__ = ["serve", "container_config", "STOP_GRACE_SECONDS"]

log = logging.getLogger(__name__)
# nameko waits for in-flight workers on stop; past this the process exits
# anyway, so `mesh up` (which allows 10 s in all) is never left waiting on us.
STOP_GRACE_SECONDS = 7
YOUNG_COLLECTION_EVERY = 10_000  # container objects (Python's default: 700); see serve()


def container_config(config, name, replica=1, share=None):
    """`config` for replica `replica` of `name`'s container: its WORKERS become
    nameko's max_workers (from which nameko also takes its prefetch), no more than
    its PostgreSQL connection `share` gives connections to (mesh.data.budget); a replica
    after the first serves /metrics on a port of its own; with BROKER_IDENTITIES
    it connects as its own broker user and declares no exchange; its workers
    run in `MeshContainer` (mesh.runtime.container)."""
    return {**as_identity(config, name),
            "SERVICE_CONTAINER_CLS": CONTAINER_CLASS,
            "DECLARE_EVENT_EXCHANGES": declares_exchanges(config),
            "max_workers": budget.workers_of(config, name, share),
            "OPS_PORTS": {**(config.get("OPS_PORTS") or {}),
                          name: ops_port(config, name, replica)}}


def connection_share(config, name):
    """The connections this process may hold on its PostgreSQL server (None on
    SQLite); a share too small to run on ends the process with one line."""
    url = config.get(database_setting(name))
    if not url or not url.startswith("postgresql"):
        return None
    engine = make_engine(url, pool={"pool_size": 1, "max_overflow": 0})
    try:
        return budget.share_of(config, engine)
    except budget.OverBudget as exc:
        sys.exit(f"mesh: {name}: {exc}")
    finally:
        engine.dispose()


def serve(config, name, replica=None):
    """Migrate the service's database, run it until SIGTERM/SIGINT, then drain.
    `replica`: which of several processes of the service this is (`mesh up
    --scale`), shown on every log line; None when it runs once."""
    logs.set_process_service(name, replica)
    logs.skip_unused_record_fields()
    codec.register()
    if "LOGGING" in config:
        logging.config.dictConfig(config["LOGGING"])
    refusal = broker_refusal(as_identity(config, name)["AMQP_URI"])
    if refusal:  # for good: retrying for ever would only hide it
        sys.exit(f"mesh: {name}: {refusal}")
    service_cls = import_service(config["SERVICES"][name])
    if migrations.upgrade_or_exit(config, name):
        log.info("%s database is at the latest schema", name)
    share = connection_share(config, name)

    runner = ServiceRunner({**container_config(config, name, replica or 1, share),
                            budget.CONNECTION_SHARE: share})
    runner.add_service(service_cls)
    stopping = []

    def stop(signum, frame):
        # signal handlers run in the hub's main loop: hand off to a greenthread
        if not stopping:
            stopping.append(signum)
            log.info("%s stopping (signal %s)", name, signum)
            eventlet.spawn_n(runner.stop)
            # nameko's stop, and its kill too, wait for the queue consumer, which
            # retries a lost broker for ever: the grace is kept by the kernel's
            # alarm, which needs no greenthread to get its turn
            signal.alarm(STOP_GRACE_SECONDS)

    def give_up(signum, frame):
        log.warning("%s did not stop within %d s; exiting, its unfinished work left to "
                    "be redelivered", name, STOP_GRACE_SECONDS)
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, give_up)
    try:
        runner.start()
    except ConfigurationError as exc:  # e.g. a queue of another type: say it once
        runner.kill()
        sys.exit(f"mesh: {name}: {exc}")
    # Everything made so far (modules, extensions, pools) lives as long as the
    # process; left in the collector's oldest generation, it is scanned by every
    # full collection, which stalls every in-flight request for tens of ms
    # (the gateway's p99 at 1,200 req/s). Frozen, a full collection scans only
    # what came after.
    gc.freeze()
    # Each request or event leaves a few reference cycles and many short-lived
    # container objects. At Python's default (a young pass once 700 more of them
    # were made than freed) a busy service ran 10–20 young passes a second, each
    # walking the young objects still alive (much of it in-flight work, which
    # then moves up and is walked again by the older generation's passes); at
    # YOUNG_COLLECTION_EVERY, a fourteenth as many. Cyclic garbage waits longer
    # for its pass (under the orders load each service's peak RSS rose by at
    # most 2.2 MB; a request's body, up to 1 MB, in a cycle counts as one object).
    # Side by side, a few per cent more orders a second (docs/reference/
    # performance.md, "Fewer statements an order").
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    log.info("%s started", name)
    runnlet = eventlet.spawn(runner.wait)
    try:
        runnlet.wait()
    except Exception:
        log.exception("%s crashed", name)
        sys.exit(1)
    signal.alarm(0)  # stopped in time: what the interpreter does on its way out is no overrun
    log.info("%s stopped", name)
