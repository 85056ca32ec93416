"""Logging: JSON lines (or text for humans) stamped with the worker's context.

Every record gets `service`, `entrypoint` and `request_id`: from the worker the
record was logged in (see `bind`), else from the process (`set_process_service`).
The request id of an HTTP request is the correlation id of every RPC call and
event it causes, so one id finds the whole story across services.
"""
import datetime as dt
import functools
import json
import logging
import socket
import warnings

from pythonjsonlogger.orjson import OrjsonFormatter

__all__ = ["QuietExpectedErrors", "WorkerContext", "MeshJsonFormatter", "MeshTextFormatter",
           "bind", "unbind", "set_process_service", "utc_timestamp",
           "quiet_eventlet_deprecation", "skip_unused_record_fields", "CONTEXT_FIELDS"]

CONTEXT_FIELDS = ("service", "replica", "host", "entrypoint", "request_id")
_process = {"service": None, "replica": None, "host": None}


@functools.cache
def _local():
    # one per greenthread, so concurrent workers never mix; imported late, as
    # eventlet must not be imported before `mesh serve` has silenced its warning
    from eventlet import corolocal

    return corolocal.local()


def utc_timestamp(seconds):
    """`2026-11-23T19:05:00.123Z`: the timestamp of every JSON line.

    What `datetime.fromtimestamp(seconds, utc).isoformat(timespec="milliseconds")`
    writes (rounded to the microsecond, then cut to the millisecond), at a third of
    its cost: the date and time of day are formatted once a second."""
    whole = int(seconds)
    micros = round((seconds - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{_utc_second(whole)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(whole_seconds):
    return dt.datetime.fromtimestamp(whole_seconds, dt.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%S")


def bind(**fields):
    """Stamp this greenthread's log records with `fields` (a worker's context)."""
    _local().fields = fields


def unbind():
    _local().fields = {}


def set_process_service(name, replica=None):
    """The service of records logged outside any worker (start-up, relays), and of
    every record the replica and host: replicas of one service, on one machine or
    several, are told apart line by line (None: a service run once has no replica
    number, and a test's records no host)."""
    _process["service"] = name
    _process["replica"] = replica
    _process["host"] = socket.gethostname() if name is not None else None


class WorkerContext(logging.Filter):
    """Adds CONTEXT_FIELDS to every record; a field given in `extra=` wins."""

    def filter(self, record):
        fields = getattr(_local(), "fields", None) or {}
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, fields.get(name) or _process.get(name))
        return True


class MeshJsonFormatter(OrjsonFormatter):
    """One JSON object per line: timestamp (UTC), level, logger, message, context, extras.

    orjson writes it (a line per request adds up); what orjson refuses, such as
    a lone surrogate a client sent, is written by the standard library instead,
    so no line is ever lost.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)

    def add_fields(self, log_record, record, message_dict):
        log_record["timestamp"] = utc_timestamp(record.created)
        super().add_fields(log_record, record, message_dict)
        for name in CONTEXT_FIELDS:
            if log_record.get(name) is None:
                log_record.pop(name, None)

    def jsonify_log_record(self, log_data):
        try:
            return super().jsonify_log_record(log_data)
        except TypeError:
            return json.dumps(log_data, default=str)


class MeshTextFormatter(logging.Formatter):
    """For people: `time LEVEL service [request id] logger: message`."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(context)s%(name)s: %(message)s")

    def format(self, record):
        parts = [getattr(record, "service", None)]
        request_id = getattr(record, "request_id", None)
        parts.append(f"[{request_id}]" if request_id else None)
        record.context = "".join(f"{part} " for part in parts if part)
        return super().format(record)


class QuietExpectedErrors(logging.Filter):
    """Drop nameko's own line for an error a contract expects (a 404 is not a bug):
    the worker's `mesh.worker` line already tells it, as `expected_error`."""

    def filter(self, record):
        return not (record.levelno < logging.ERROR and record.name == "nameko.containers"
                    and str(record.msg).startswith("(expected)"))


def skip_unused_record_fields():
    """No log line shows the thread, the process or the line of code that logged it
    (a traceback still says where): do not look them up for each record, as the
    logging HOWTO's "Optimization" section suggests."""
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None


def quiet_eventlet_deprecation():
    """eventlet warns on import that it is in bugfix mode; nameko 2 needs it anyway."""
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
