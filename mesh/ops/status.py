"""`mesh status`: what runs, what waits, what failed, for the configured services.

Instances are the consumers on a service's RPC queue (its first handler's queue
when it serves no RPC); a service that serves HTTP (the gateway) has no queue
of its own but exclusive ones, and is asked for /health instead.
"""
import urllib.request

from nameko.rpc import Rpc
from mesh.data.db import existing_engine
from mesh.http.entrypoints import HttpEntrypoint
from mesh.messaging.health import service_queues
from mesh.messaging.outbox import Outbox, backlog_of
from mesh.messaging.tls import broker_connection
from mesh.messaging.topology import dlq_name
from mesh.ops.dlq import handlers_of
from mesh.core.services import entrypoints_of, import_service

__all__ = ["gather", "render", "shown"]


def _has_outbox(service_cls):
    return any(isinstance(getattr(service_cls, attr), Outbox) for attr in dir(service_cls))


def _queues(connection, name, service_cls, report):
    serves_rpc = any(isinstance(e, Rpc) for _, e in entrypoints_of(service_cls))
    report.update(service_queues(connection, name, serves_rpc, handlers_of(name, service_cls)))
    if report["instances"] == 0:
        report["problems"].append("no running instance")


def _outbox(config, name, service_cls, report):
    if not _has_outbox(service_cls):
        return
    engine = existing_engine(config, name)
    if engine is None:
        report["problems"].append("no database yet: the service never started here")
        return
    try:
        backlog, age = backlog_of(engine)
        report["outbox"] = {"backlog": backlog, "oldest_age_seconds": round(age, 1)}
    except Exception as exc:  # a database that cannot answer is what to report
        reason = str(getattr(exc, "orig", exc)).splitlines()[0] if str(exc) else ""
        report["problems"].append(f"database: {type(exc).__name__}: {reason}".rstrip(": "))
    finally:
        engine.dispose()


def _serves_http(service_cls):
    # its only queues (broadcast handlers') are exclusive: not countable from here
    return any(isinstance(e, HttpEntrypoint) for _, e in entrypoints_of(service_cls))


def _http_front(config, report, timeout):
    url = f"http://{config['GATEWAY_HOST']}:{config['GATEWAY_PORT']}"
    report["url"] = url
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as response:
            report["instances"] = 1 if response.status == 200 else 0
    except Exception as exc:  # refused, timed out: the gateway is not serving
        report["instances"] = 0
        report["problems"].append(f"{url}/health does not answer ({type(exc).__name__})")


def gather(config, timeout=2.0):
    """The mesh's state as one JSON-able dict; `ok` is False when anything is down."""
    services = {name: {"instances": None, "ready": False, "queues": {}, "dead_letters": {},
                       "outbox": None, "problems": []}
                for name in config["SERVICES"]}
    classes = {name: import_service(path) for name, path in config["SERVICES"].items()}
    serves_http = {name for name, service_cls in classes.items() if _serves_http(service_cls)}
    broker = "ok"
    try:
        with broker_connection(config["AMQP_URI"], connect_timeout=timeout,
                        transport_options={"max_retries": 0}) as connection:
            connection.connect()
            for name, service_cls in classes.items():
                if name not in serves_http:
                    _queues(connection, name, service_cls, services[name])
    except Exception as exc:  # the broker is the first thing an operator must know about
        broker = f"unreachable: {type(exc).__name__}: {exc}"
    for name, report in services.items():
        if name in serves_http:
            _http_front(config, report, timeout)
        else:
            _outbox(config, name, classes[name], report)
            if broker != "ok":
                report["problems"].append("broker unreachable")
        report["ready"] = not report["problems"]
    return {"ok": broker == "ok" and all(r["ready"] for r in services.values()),
            "broker": broker, "services": services}


def render(status):
    """The table `mesh status` prints."""
    lines = [f"broker: {status['broker']}", "",
             f"{'SERVICE':<14}{'READY':<7}{'INSTANCES':>9}{'QUEUED':>8}{'OUTBOX':>8}"
             f"{'OLDEST':>8}{'DLQ':>6}  PROBLEMS"]
    parked = []
    for name, report in status["services"].items():
        outbox = report["outbox"] or {}
        dead = sum(report["dead_letters"].values())
        lines.append(
            f"{name:<14}{'yes' if report['ready'] else 'NO':<7}"
            f"{shown(report['instances']):>9}"
            f"{shown(sum(report['queues'].values()) if report['queues'] else None):>8}"
            f"{shown(outbox.get('backlog')):>8}"
            f"{shown(outbox.get('oldest_age_seconds'), 's'):>8}"
            f"{shown(dead if report['dead_letters'] else None):>6}  "
            f"{'; '.join(report['problems'])}".rstrip())
        parked += [(queue, n) for queue, n in report["dead_letters"].items() if n]
    if parked:
        lines += ["", "dead-lettered events (see `mesh dlq list QUEUE`):"]
        lines += [f"  {n:>6}  {dlq_name(queue)}" for queue, n in parked]
    return "\n".join(lines)


def shown(value, unit="", none="-"):
    """A figure of the status as a person reads it: `none` for a figure not known."""
    if value is None:
        return none
    return f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"
