"""`mesh trace`: the story of one request across every service, from what each keeps.

A request's id is the correlation id of every call and event it causes
(mesh.core.logs), so each service's own database already holds its part: the
events it recorded (outbox, with the entrypoint that recorded them), the events
it handled (inbox), the keyed requests it applied (rpc_requests) and, for a
service that runs a saga (mesh.data.sagas), where that saga is. Dead letters
come from the DLQs, and retries and calls from the JSON logs when given. Nothing
is written for the trace's sake: it reads what the guarantees keep anyway.
"""
import datetime as dt
import json
import re

from nameko.rpc import Rpc
from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError
from sqlalchemy import or_, select

from mesh.core.services import entrypoints_of, import_service
from mesh.data.db import Database, existing_engine
from mesh.data.sagas import SagaState
from mesh.data.tables import inbox, outbox, rpc_requests
from mesh.messaging.causes import described, first_line
from mesh.messaging.handlers import MeshEventHandler
from mesh.messaging.topology import BROADCAST, dlq_name
from mesh.ops import dlq
from mesh.ops.dlq import utc_moment

__all__ = ["trace", "render", "UnknownRequest", "KINDS"]

KINDS = ("rpc", "event-out", "event-in", "retry", "dead-letter", "saga")
_RETRIED = re.compile(r"^\S+ failed on attempt (\d+) \((.*)\); retrying in (\d+) ms$", re.S)
_PARKED = re.compile(r"^\S+ parked a message in (\S+) after (\d+) attempt\(s\): (.*)$", re.S)


class UnknownRequest(Exception):
    """No service, DLQ or log line knows the request (or the order)."""


class _Mesh:
    """The configured services as a trace reads them: classes, handlers, databases."""

    def __init__(self, config):
        self.config = config
        self.classes = {name: import_service(path)
                        for name, path in config["SERVICES"].items()}
        self.notes = []
        self.engines = {}
        for name, service_cls in self.classes.items():
            if not any(isinstance(getattr(service_cls, attr), Database)
                       for attr in dir(service_cls)):
                continue
            engine = existing_engine(config, name)
            if engine is None:
                self.notes.append(f"{name}: no database yet (the service never ran here)")
            else:
                self.engines[name] = engine

    def rpc_methods(self, name):
        return {attr for attr, e in entrypoints_of(self.classes.get(name, object))
                if isinstance(e, Rpc)}

    def subscribers(self, source, event_type):
        """`service.method` of each lasting handler of `source`'s `event_type`."""
        return sorted(f"{name}.{attr}" for name, service_cls in self.classes.items()
                      for attr, e in entrypoints_of(service_cls)
                      if isinstance(e, MeshEventHandler) and e.source_service == source
                      and e.event_type == event_type and e.handler_type != BROADCAST
                      and name in self.engines)

    def sagas(self):
        return [(name, getattr(self.classes[name], attr)) for name in self.engines
                for attr in dir(self.classes[name])
                if isinstance(getattr(self.classes[name], attr), SagaState)]

    def read(self, name, statement=None, reading=None):
        """The rows of `statement` (or what `reading(connection)` returns) from
        `name`'s database; on an error, a note and nothing."""
        try:
            with self.engines[name].connect() as conn:
                return reading(conn) if reading else conn.execute(statement).all()
        except Exception as exc:  # one database away must not hide the others' story
            self.notes.append(f"{name}: its database did not answer "
                              f"({described(exc)[:160]})")
            return None if reading else []

    def close(self):
        for engine in self.engines.values():
            engine.dispose()


def _step(service, kind, name, outcome, at, detail=None, **private):
    # `private` (`event`, `group`) is for `_where`; it is not part of the story
    return {"service": service, "kind": kind, "name": name, "outcome": outcome,
            "at": utc_moment(at), "detail": detail, **{f"_{k}": v for k, v in private.items()}}


def _saga_rows(mesh, name, saga, key, *where):
    """`name`'s outbox rows whose data names saga `key` (`saga.key`, an order id)."""
    # a LIKE finds the candidates (the data is JSON, compact unless the codec fell
    # back to kombu's), parsing confirms
    field = re.sub(r"([\\%_])", r"\\\1", saga.key)
    rows = mesh.read(name, select(outbox).where(or_(*(
        outbox.c.data.like(f'%"{field}":{space}{int(key)}%', escape="\\")
        for space in ("", " "))), *where))
    return [row for row in rows if _data(row).get(saga.key) == int(key)]


def _data(row):
    try:
        data = json.loads(row.data)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _saga_keys(saga, events):
    keys = {_data(row).get(saga.key) for _, row in events.values()}
    return sorted(key for key in keys if isinstance(key, int) and not isinstance(key, bool))


def _request_of_saga(mesh, key):
    """The request that started saga `key` (an order id), from its first event."""
    for name, saga in mesh.sagas():
        for row in _saga_rows(mesh, name, saga, key, outbox.c.type == saga.started_by):
            if not row.correlation_id:
                raise UnknownRequest(f"{saga.key} {key} was started without a "
                                     "request id: nothing links its steps")
            return row.correlation_id
    raise UnknownRequest(f"no service knows {'/'.join(s.key for _, s in mesh.sagas()) or 'order'}"
                         f" {key} (or its first event is past OUTBOX_RETENTION_SECONDS)")


def _events_of(mesh, request_id):
    """`{event_id: (service, outbox row)}`: the events the request caused, and those
    of the sagas it started that came from elsewhere (a timer's, another request's)."""
    events = {}
    for name in mesh.engines:
        for row in mesh.read(name, select(outbox).where(
                outbox.c.correlation_id == request_id)):
            events[row.event_id] = (name, row)
    for _, saga in mesh.sagas():
        for key in _saga_keys(saga, events):
            for name in mesh.engines:
                for row in _saga_rows(mesh, name, saga, key):
                    events.setdefault(row.event_id, (name, row))
    return events


def _stored_steps(mesh, request_id):
    """Steps from the databases, and the events the request caused."""
    steps, events = [], _events_of(mesh, request_id)
    for name, row in sorted(events.values(), key=lambda found: found[1].occurred_at):
        if row.written_by in mesh.rpc_methods(name):
            steps.append(_step(name, "rpc", row.written_by, "applied", row.occurred_at,
                               "its writes committed with the event below"))
        sent = row.published_at
        detail = (f"confirmed by the broker after "
                  f"{(utc_moment(sent) - utc_moment(row.occurred_at)).total_seconds() * 1000:.0f} ms"
                  if sent else "waiting in the outbox")
        if row.correlation_id != request_id:
            detail += (f"; request {row.correlation_id}" if row.correlation_id else
                       f"; by {row.written_by or 'a process'}, outside any request")
        steps.append(_step(name, "event-out", row.type, "sent" if sent else "not sent yet",
                           row.occurred_at, detail))
    for name in mesh.engines:
        for row in mesh.read(name, select(rpc_requests).where(
                rpc_requests.c.request_id == request_id)):
            steps.append(_step(name, "rpc", row.method or "?", "applied", row.applied_at,
                               "a keyed request: applied once"))
    for name in mesh.engines:
        if not events:
            break
        for row in mesh.read(name, select(inbox).where(
                inbox.c.event_id.in_(list(events)))):
            source, event = events[row.event_id]
            service, _, method = row.handler.partition(".")
            steps.append(_step(service, "event-in", method, "handled", row.processed_at,
                               f"{event.type} from {source}", event=row.event_id))
    return _first_of_each_rpc(steps), events


def _first_of_each_rpc(steps):
    """One rpc step per service and method: several events recorded by one call
    tell of that call once."""
    seen, kept = set(), []
    for step in sorted(steps, key=lambda s: s["at"]):
        if step["kind"] == "rpc":
            if (step["service"], step["name"]) in seen:
                continue
            seen.add((step["service"], step["name"]))
        kept.append(step)
    return kept


def _saga_steps(mesh, events):
    steps, sagas = [], []
    for name, saga in mesh.sagas():
        for key in _saga_keys(saga, events):
            state = mesh.read(name, reading=lambda conn, key=key: saga.read(conn, key))
            if state is not None:
                label = f"{saga.key.removesuffix('_id')} {key}"
                sagas.append((label, state))
                steps.append(_step(name, "saga", label, state["state"], state["at"],
                                   state["detail"]))
    return steps, sagas


def _parked_steps(mesh, request_id, events):
    """Dead letters of the request, or of its events, still parked in a DLQ."""
    steps = []
    try:
        for name, service_cls in mesh.classes.items():
            for queue in dlq.queues_of(name, service_cls):
                try:
                    parked = dlq.messages(mesh.config["AMQP_URI"], queue)
                except dlq.QueueUnavailable as exc:  # the other DLQs may still be read
                    mesh.notes.append(f"dead letters not read: {exc}")
                    continue
                for message in parked:
                    if message["request_id"] != request_id and \
                            message["event_id"] not in events:
                        continue
                    method = queue.rsplit(".", 1)[-1]
                    steps.append(_step(
                        name, "dead-letter", method,
                        f"parked after {message['attempts'] or 0} attempt(s)",
                        utc_moment(message["failed_at"]) or dt.datetime.now(dt.timezone.utc),
                        f"{first_line(message['error'])}; group {message['fingerprint']} "
                        f"in {dlq_name(queue)}", group=message["fingerprint"],
                        error=first_line(message["error"])))
    except (OSError, AMQPError, OperationalError) as exc:  # the databases' story stands
        mesh.notes.append(f"dead letters not read: the broker did not answer "
                          f"({described(exc)})")
    return steps


def _logged_steps(mesh, request_id, log_files):
    """Calls, retries and parkings from JSON log lines of the request."""
    steps = []
    for path in log_files:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if request_id not in line:
                    continue  # most lines: no need to parse them
                try:
                    record = json.loads(line)
                    step = _logged_step(mesh, record) if isinstance(record, dict) and \
                        record.get("request_id") == request_id else None
                except (ValueError, TypeError):
                    continue  # not a line of ours: a log file holds what it holds
                if step is not None:
                    steps.append(step)
    return steps


def _logged_step(mesh, record):
    service, entrypoint = str(record.get("service") or "?"), record.get("entrypoint")
    message, at = str(record.get("message", "")), utc_moment(record.get("timestamp"))
    if at is None:
        return None
    if record.get("logger") == "mesh.worker" and entrypoint in mesh.rpc_methods(service):
        outcome = record.get("outcome", "?")
        took = record.get("duration_ms")
        took = took if isinstance(took, (int, float)) else None
        started = at - dt.timedelta(milliseconds=took or 0)
        said = {"ok": "answered", "expected_error": "answered with an error"}.get(
            outcome, "failed")
        detail = ", ".join(filter(None, (record.get("error_type") and
                                         str(record["error_type"]),
                                         took is not None and f"in {took:.1f} ms")))
        return _step(service, "rpc", entrypoint, said, started, detail or None)
    retried = _RETRIED.match(message)
    if retried:
        attempt, error, delay = retried.groups()
        return _step(service, "retry", entrypoint or "?",
                     f"attempt {attempt} failed, again in {int(delay) / 1000:g} s", at,
                     first_line(error))
    parked = _PARKED.match(message)
    if parked:
        queue, attempts, error = parked.groups()
        return _step(service, "dead-letter", entrypoint or "?",
                     f"parked after {attempts} attempt(s)", at,
                     f"{first_line(error)}; in {queue}")
    return None


def _merged(stored, logged, parked):
    """The logs' rpc steps say more (answered, how long) than the databases': they
    replace them; a dead letter still in its DLQ replaces the log's line of it."""
    logged_rpcs = {(s["service"], s["name"]) for s in logged if s["kind"] == "rpc"}
    still_parked = {(s["service"], s["name"]) for s in parked}
    steps = [s for s in stored if not (s["kind"] == "rpc" and
                                       (s["service"], s["name"]) in logged_rpcs)]
    steps += [s for s in logged if not (s["kind"] == "dead-letter" and
                                        (s["service"], s["name"]) in still_parked)]
    return steps + parked


def _where(mesh, steps, events, sagas, now):
    """One sentence: where the request is now."""
    parked = [s for s in steps if s.get("_group")]
    if len(parked) == 1:
        (step,) = parked
        return (f"dead-lettered: {step['service']}.{step['name']} gave up "
                f"({step['_error']}); fix the cause, then "
                f"`mesh dlq replay --group {step['_group']}`")
    if parked:
        return (f"dead-lettered in {len(parked)} handlers: " + "; ".join(
            f"{s['service']}.{s['name']} ({s['_error']})" for s in parked) +
            "; fix the causes, then replay each, oldest first: " + ", ".join(
                dict.fromkeys(f"`mesh dlq replay --group {s['_group']}`" for s in parked)))
    unsent = [(name, row) for name, row in events.values() if row.published_at is None]
    if unsent:
        name, row = unsent[0]
        return (f"waiting: {name} has not sent {row.type} yet (recorded "
                f"{(now - utc_moment(row.occurred_at)).total_seconds():.0f} s ago; `mesh status` "
                "shows its outbox)")
    handled = {(s["service"], s["name"], s["_event"]) for s in steps if s.get("_event")}
    for name, row in events.values():
        for handler in mesh.subscribers(name, row.type):
            service, method = handler.split(".", 1)
            if (service, method, row.event_id) not in handled:
                return (f"waiting for {handler} to handle {row.type} (sent "
                        f"{(now - utc_moment(row.published_at)).total_seconds():.0f} s ago)")
    running = [(label, state) for label, state in sagas if not state["settled"]]
    if running:
        label, state = running[0]
        return f"in progress: {label} is {state['state']} ({state['detail']})"
    if sagas:
        label, state = sagas[-1]
        return f"settled: {label} {state['state']} ({state['detail']})"
    return "settled: every event it caused was sent and handled"


def trace(config, request_id=None, *, order_id=None, log_files=()):
    """`{request_id, steps, where, notes}`: the request's steps in time order, each
    `{service, kind, name, outcome, at (ISO 8601), after_seconds, detail}`.

    Raises `UnknownRequest` when nothing knows the id (or the order)."""
    mesh = _Mesh(config)
    try:
        if order_id is not None:
            request_id = _request_of_saga(mesh, order_id)
        stored, events = _stored_steps(mesh, request_id)
        saga_steps, sagas = _saga_steps(mesh, events)
        logged = _logged_steps(mesh, request_id, log_files)
        parked = _parked_steps(mesh, request_id, events)
        steps = _merged(stored, logged, parked) + saga_steps
        if not steps:
            raise UnknownRequest(
                f"no service, dead letter or log line knows request {request_id!r} (an "
                "HTTP request's id is its X-Request-Id; rows go after the "
                "*_RETENTION_SECONDS settings)")
        rank = {kind: n for n, kind in enumerate(KINDS)}
        steps.sort(key=lambda s: (s["at"], rank[s["kind"]]))
        now = dt.datetime.now(dt.timezone.utc)
        where = _where(mesh, steps, events, sagas, now)
        first = steps[0]["at"]
        steps = [{k: v for k, v in step.items() if not k.startswith("_")}
                 for step in steps]
        for step in steps:
            step["after_seconds"] = round((step["at"] - first).total_seconds(), 3)
            step["at"] = step["at"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"request_id": request_id, "steps": steps, "where": where,
                "notes": mesh.notes}
    finally:
        mesh.close()


def render(story):
    """The lines `mesh trace` prints."""
    lines = [f"request {story['request_id']}", ""]
    for step in story["steps"]:
        detail = f"  ({step['detail']})" if step["detail"] else ""
        lines.append(f"{step['at']}  +{step['after_seconds']:>8.3f}s  {step['service']:<14}"
                     f"{step['kind']:<12}{step['name']:<28}{step['outcome']}{detail}")
    lines += ["", f"now: {story['where']}"]
    lines += [f"note: {note}" for note in story["notes"]]
    return "\n".join(lines)
