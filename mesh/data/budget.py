"""PostgreSQL connections: each process of the mesh takes an equal share of its
server's, sized from how many processes the server serves.

A server gives out `max_connections`, less those it keeps for superusers and
`OPERATOR_MARGIN` for people and `mesh migrate`/`mesh status`. Every process of
every service whose database is on it (`REPLICAS` of each; `mesh up --scale`
tells its children) takes an equal share: the outbox relay `RELAY_POOL`, the
pruner `PRUNER_POOL`, and the service's workers the rest, up to a connection per
worker (`WORKERS`) and `EXTRA` for readiness probes and gauges; a process
whose share is smaller runs fewer workers, a connection each (`workers_of`). A
share below `MIN_SHARE` could not run the service: it refuses to start, in one
line, rather than fail with `too many clients` under load.
"""
from sqlalchemy import make_url, text

from mesh.core.config import database_setting, setting

__all__ = ["DEFAULT_WORKERS", "CONNECTION_SHARE", "RELAY_POOL", "PRUNER_POOL", "OPERATOR_MARGIN", "workers_of",
           "worker_pool", "processes_on", "share_of", "OverBudget"]

DEFAULT_WORKERS = 50  # as config.yaml gives most services (nameko's own is 10)
CONNECTION_SHARE = "MESH_CONNECTION_SHARE"  # container config: this process's share
RELAY_POOL = {"pool_size": 1, "max_overflow": 1}  # its loop, and the metrics' backlog query
PRUNER_POOL = {"pool_size": 1, "max_overflow": 0}
EXTRA = 2  # a readiness probe and a gauge's scrape, beside the workers
OPERATOR_MARGIN = 5
OWN = sum(pool["pool_size"] + pool["max_overflow"] for pool in (RELAY_POOL, PRUNER_POOL))
MIN_SHARE = OWN + 2  # a worker's connection and one for probes and gauges


class OverBudget(Exception):
    """The processes on one PostgreSQL server cannot each have a working share of
    its connections; the message says how many, whose, and what to change."""


def workers_of(config, service, share=None):
    """The workers (nameko's max_workers, hence the prefetch of each of its
    queues' consumers) of one process of `service`: its WORKERS, or, with a
    PostgreSQL `share` too small to give each of them a connection, as many as
    it can. A worker with no connection would only wait in the process for one,
    and the waiting makes the slowest answers slower."""
    workers = (config.get("WORKERS") or {}).get(service, DEFAULT_WORKERS)
    return workers if share is None else max(1, min(workers, share - OWN - EXTRA))


def worker_pool(workers, share=None):
    """The pool of a service's `Database`: a connection per worker and EXTRA, or
    what is left of the process's PostgreSQL `share` of its server after the relay
    and the pruner, when that is less (on SQLite, `share` is None: a connection
    kept for each worker, made when first wanted; see mesh.data.db.make_engine)."""
    size = workers + EXTRA if share is None else min(workers + EXTRA, share - OWN)
    return {"pool_size": size, "max_overflow": 0}


def _server(url):
    parsed = make_url(url)
    return parsed.host or "localhost", parsed.port or 5432


def processes_on(config, url):
    """`{service: processes}` of every service in SERVICES whose PostgreSQL
    database is on the server of `url`."""
    replicas = setting(config, "REPLICAS") or {}
    found = {}
    for service in config["SERVICES"]:
        other = config.get(database_setting(service))
        if other and other.startswith("postgresql") and _server(other) == _server(url):
            found[service] = replicas.get(service, 1)
    return found


def share_of(config, engine):
    """The connections one process may hold on the PostgreSQL server of `engine`;
    OverBudget when that is too few to run on."""
    with engine.connect() as connection:
        most = int(connection.execute(text("SHOW max_connections")).scalar())
        kept = int(connection.execute(text("SHOW superuser_reserved_connections")).scalar())
    url = engine.url.render_as_string(hide_password=False)
    processes = processes_on(config, url)
    allowed = most - kept - OPERATOR_MARGIN
    share = allowed // max(1, sum(processes.values()))
    if share < MIN_SHARE:
        host, port = _server(url)
        whose = ", ".join(f"{name} {count}" for name, count in processes.items())
        raise OverBudget(
            f"PostgreSQL at {host}:{port} gives the mesh {allowed} connections "
            f"(max_connections {most}, less {kept} kept for superusers and "
            f"{OPERATOR_MARGIN} for operators), {share} for each of its "
            f"{sum(processes.values())} processes there ({whose}), and a process needs "
            f"{MIN_SHARE}: run fewer REPLICAS_<SERVICE> there, put some services' "
            "databases on another server, or raise max_connections")
    return share
