"""How many processes of each service `mesh up` runs: REPLICAS in config, then
`--scale orders=2,inventory=2` on the command line.

Replicas of a service share its queues (the broker hands each message to one of
them) and its database, so more than one needs a database several processes can
share: PostgreSQL, not a SQLite file. A service that serves HTTP binds its one
port; run more of it behind a load balancer (see docs "Running on Kubernetes").
"""
from mesh.core.config import ConfigError, setting
from mesh.core.services import entrypoints_of, import_service
from mesh.data.db import database_url
from mesh.data.migrations import alembic_config
from mesh.http.entrypoints import HttpEntrypoint

__all__ = ["parse_scale", "replica_counts", "ops_port", "MAX_REPLICAS", "OPS_PORT_STRIDE"]

MAX_REPLICAS = 16
# replica N of a service serves /metrics on its OPS_PORTS port + (N - 1) * 100
OPS_PORT_STRIDE = 100


def parse_scale(text):
    """`"orders=2,inventory=2"` → `{"orders": 2, "inventory": 2}`."""
    counts = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, equals, count = part.partition("=")
        if not equals or not count.strip().isdigit():
            raise ConfigError(f"--scale: {part!r} must look like SERVICE=COUNT, "
                              "e.g. orders=2")
        counts[name.strip()] = int(count)
    return counts


def replica_counts(config, names, scale=None):
    """`{service: processes}` for `names`; ConfigError says what cannot run."""
    wanted = {**(setting(config, "REPLICAS") or {}), **(scale or {})}
    unknown = sorted(set(wanted) - set(config["SERVICES"]))
    if unknown:
        raise ConfigError(f"replicas of unknown service(s) {', '.join(unknown)}; "
                          f"known: {', '.join(config['SERVICES'])}")
    counts = {}
    for name in names:
        count = wanted.get(name, 1)
        if not 1 <= count <= MAX_REPLICAS:
            raise ConfigError(f"{name}: replicas must be from 1 to {MAX_REPLICAS}, "
                              f"not {count}")
        if count > 1:
            service_cls = import_service(config["SERVICES"][name])
            if any(isinstance(e, HttpEntrypoint) for _, e in entrypoints_of(service_cls)):
                raise ConfigError(f"{name}: serves HTTP on one port, so `mesh up` runs "
                                  "one; run more behind a load balancer")
            if alembic_config(config, name) is not None and \
                    database_url(config, name).startswith("sqlite"):
                raise ConfigError(
                    f"{name}: {count} replicas need a database they can share; a SQLite "
                    f"file serves one process: set DATABASE_URL_{name.upper()} to a "
                    "postgresql:// URL")
        counts[name] = count
    return counts


def ops_port(config, name, replica):
    """Where replica `replica` (from 1) of `name` serves /metrics and /health."""
    port = (setting(config, "OPS_PORTS") or {}).get(name, 0)
    return port + (replica - 1) * OPS_PORT_STRIDE if port else 0
