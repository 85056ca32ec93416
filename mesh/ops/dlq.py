"""Operator tools for dead-lettered events: list, replay and purge `<queue>.dlq`.

QUEUE is a handler's lasting queue name (mesh.messaging.topology): for a broadcast handler,
its name without the instance id, which names the DLQ every instance parks in.
"""
import datetime as dt
import functools
import json
import time

from amqp.exceptions import InternalError, NotFound
from eventlet.semaphore import Semaphore

from mesh.messaging.broker import ConfirmedPublisher
from mesh.messaging.causes import cause_of, fingerprint
from mesh.messaging.handlers import ATTEMPT, ERROR, FAILED_AT, ORIGIN, MeshEventHandler
from mesh.messaging.health import queue_state
from mesh.messaging.outbox import CORRELATION_HEADER
from mesh.messaging.tls import broker_connection
from mesh.messaging.topology import BROADCAST, dlq_name, lasting_queue_of
from mesh.core.services import entrypoints_of, import_service

__all__ = ["handler_queues", "queues_of", "handlers_of", "base_queue", "depths",
           "messages", "groups", "render_groups", "queue_of_group", "replay", "purge",
           "utc_moment", "QueueMissing", "QueueUnavailable"]


def handlers_of(name, service_cls):
    """`(lasting queue, queue consumed)` of each `@handle_event` of one service; the
    second is None for a broadcast handler (one queue per running instance)."""
    found = []
    for attr, entrypoint in entrypoints_of(service_cls):
        if isinstance(entrypoint, MeshEventHandler):
            lasting = lasting_queue_of(name, attr, entrypoint)
            found.append((lasting, None if entrypoint.handler_type == BROADCAST
                          else lasting))
    return sorted(found)


def queues_of(name, service_cls):
    """The lasting queue name of each `@handle_event` of one service."""
    return [lasting for lasting, _ in handlers_of(name, service_cls)]


def handler_queues(config):
    """The queue of every `@handle_event` of the configured services."""
    return sorted(queue for name, path in config["SERVICES"].items()
                  for queue in queues_of(name, import_service(path)))


def base_queue(queue):
    return queue[:-len(".dlq")] if queue.endswith(".dlq") else queue


def depths(amqp_uri, queues):
    """`{queue: messages in its DLQ}`; None for a DLQ that does not exist yet."""
    with broker_connection(amqp_uri) as connection:
        return {queue: (queue_state(connection, dlq_name(queue)) or (None,))[0]
                for queue in queues}


class QueueUnavailable(Exception):
    """A quorum DLQ has no running process: its members are starting or down."""


class _NoProcess(Exception):
    pass


# seconds between looks at a DLQ whose quorum process is not running: about 8 s in all
_STARTING_WAITS = (0.2, 0.5, 1, 2, 4)
# A read takes a DLQ's messages unacknowledged until it closes its channel: a second
# read meanwhile would not see them. One at a time in a process (the gateway serves
# the operator page to several operators, and a trace beside a refresh).
_ONE_READER = Semaphore(1)


def _dlq_read(operation):
    """Run `operation` when no other read of a DLQ runs in this process, and run it
    again, on its own fresh connection, while the broker says the DLQ it reads has
    no process (`noproc`).

    A quorum queue answers that between its declaration and its member's start,
    and while its node restarts; the broker closes the connection with it.
    `_NoProcess` is raised only where nothing has moved yet (reading the DLQ,
    or a purge the broker refused), so running the whole operation again is safe.
    """
    @functools.wraps(operation)
    def run(amqp_uri, queue, *args, **kwargs):
        for wait in (*_STARTING_WAITS, None):
            try:
                with _ONE_READER:
                    return operation(amqp_uri, queue, *args, **kwargs)
            except _NoProcess as exc:
                if wait is None:
                    raise QueueUnavailable(
                        f"{dlq_name(base_queue(queue))} has no running queue process "
                        "(its members are starting, or their nodes are down): "
                        "try again in a moment") from exc.__cause__
                time.sleep(wait)
    return run


def _drain(connection, queue):
    """Every message of `queue`'s DLQ, unacked (closing the channel requeues them).

    A DLQ that does not exist yet is empty.
    """
    channel = connection.channel()
    got = []
    try:
        channel.queue_declare(dlq_name(base_queue(queue)), passive=True)
    except NotFound:
        return connection.channel(), got
    while True:
        try:
            message = channel.basic_get(dlq_name(base_queue(queue)), no_ack=False)
        except InternalError as exc:
            if "noproc" in str(exc):  # RabbitMQ: "Cannot get a message from queue ...: noproc"
                raise _NoProcess() from exc
            raise
        if message is None:
            return channel, got
        got.append(message)


def _describe(message, queue):
    """What a parked message says of itself; any header or body may be malformed
    (that may be why it was parked), so each field is taken only as text."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    try:
        body = json.loads(message.body)
        event_id, event_type = body.get("event_id"), body.get("type")
        correlation_id = body.get("correlation_id")
    except (ValueError, AttributeError, TypeError):
        event_id = event_type = correlation_id = None
    error, error_type = _text(headers.get(ERROR)), None
    died = headers.get("x-death")
    if error is None and isinstance(died, list) and died and isinstance(died[0], dict):
        # the broker moved it here (a quorum queue's delivery limit), not the handler
        reason = _text(died[0].get("reason"))
        error, error_type = f"dead-lettered by the broker: {reason}", f"broker {reason}"
    typed, shape = cause_of(error)
    failed = utc_moment(_text(headers.get(FAILED_AT)))
    return {"id": _text(message.properties.get("message_id") or event_id),
            "event_id": _text(event_id), "type": _text(event_type),
            "attempts": _count(headers.get(ATTEMPT)), "error": error,
            "failed_at": failed and _iso(failed),
            "request_id": _text(headers.get(CORRELATION_HEADER) or correlation_id),
            "queue": base_queue(queue), "error_type": error_type or typed, "shape": shape,
            "fingerprint": fingerprint(base_queue(queue), error)}


def _count(value):
    # the handler writes an int; anything else is shown as the text it is
    return value if isinstance(value, int) and not isinstance(value, bool) else _text(value)


def utc_moment(value):
    """An aware UTC datetime of a datetime or an ISO 8601 text (naive: UTC), else None."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None \
        else value.astimezone(dt.timezone.utc)


def _iso(moment):
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value):
    # a header is whatever its publisher put there: bytes, a number, a table
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@_dlq_read
def messages(amqp_uri, queue):
    """What `queue`'s DLQ holds, oldest first; it is left as it was."""
    with broker_connection(amqp_uri) as connection:
        channel, got = _drain(connection, queue)
        described = [_describe(m, queue) for m in got]
        channel.close()
    return described


def groups(amqp_uri, queues):
    """The dead letters of `queues` grouped by cause (`mesh.messaging.causes`), the
    latest failure first: `{fingerprint, queue, error_type, message, count,
    first_seen, last_seen, ids, request_ids}`."""
    found = {}
    for queue in queues:
        for message in messages(amqp_uri, queue):
            group = found.setdefault(message["fingerprint"], {
                "fingerprint": message["fingerprint"], "queue": message["queue"],
                "error_type": message["error_type"], "message": message["shape"],
                "count": 0, "first_seen": None, "last_seen": None, "ids": [],
                "request_ids": []})
            group["count"] += 1
            group["ids"].append(message["id"])
            if message["request_id"] and message["request_id"] not in group["request_ids"]:
                group["request_ids"].append(message["request_id"])
            seen = message["failed_at"]  # all ISO 8601 in UTC: their text sorts as time
            if seen:
                group["first_seen"] = min(filter(None, (group["first_seen"], seen)))
                group["last_seen"] = max(filter(None, (group["last_seen"], seen)))
    return sorted(found.values(), key=lambda g: (g["last_seen"] or "", g["count"]),
                  reverse=True)


def render_groups(found):
    """The table `mesh dlq groups` prints."""
    if not found:
        return "no dead letters"
    lines = [f"{'GROUP':<14}{'COUNT':>6}  {'FIRST SEEN':<22}{'LAST SEEN':<22}QUEUE / CAUSE"]
    for group in found:
        lines.append(f"{group['fingerprint']:<14}{group['count']:>6}  "
                     f"{_second(group['first_seen']):<22}{_second(group['last_seen']):<22}"
                     f"{group['queue']}")
        lines.append(f"{'':<66}{group['error_type']}: {group['message']}")
    return "\n".join(lines)


def _second(at):
    """`2026-12-05T03:39:42Z` of a group's time, `-` for none."""
    moment = utc_moment(at)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def queue_of_group(amqp_uri, queues, group):
    """The queue whose DLQ holds the group with fingerprint `group`, or None."""
    return next((g["queue"] for g in groups(amqp_uri, queues)
                 if g["fingerprint"] == group), None)


class QueueMissing(Exception):
    """A handler's queue does not exist (its service never ran on this broker)."""


def _chosen(got, queue, message_id, group):
    described = [(m, _describe(m, queue)) for m in got]
    return [m for m, said in described
            if (message_id is None or said["id"] == message_id)
            and (group is None or said["fingerprint"] == group)]


@_dlq_read
def replay(amqp_uri, queue, message_id=None, group=None):
    """Send dead-lettered messages back to their handler's queue (all, the one
    with `message_id`, or those of the cause `group`); returns how many.

    Each is acknowledged in the DLQ only once the broker has confirmed that the
    handler's queue took it; a missing queue is refused before anything moves.
    """
    base = base_queue(queue)
    with broker_connection(amqp_uri) as connection:
        channel, got = _drain(connection, base)
        chosen = _chosen(got, base, message_id, group)
        # back to the queue it failed in: a broadcast handler's is its instance's
        targets = [(m, (m.headers or {}).get(ORIGIN) or base) for m in chosen]
        missing = sorted(t for t in {target for _, target in targets}
                         if queue_state(connection, t) is None)
        if missing:
            channel.close()
            raise QueueMissing(f"{missing[0]} does not exist: start the service that "
                               "handles it, then replay")
        publisher = ConfirmedPublisher(amqp_uri)
        try:
            returned = publisher.publish_batch(
                [(m.body, "", target, _replayed(m)) for m, target in targets]) \
                if targets else set()
        finally:
            publisher.close()
        replayed = 0
        for message in chosen:
            if message.properties.get("message_id") not in returned:
                channel.basic_ack(message.delivery_tag)
                replayed += 1
        channel.close()  # what was not acknowledged stays parked
    return replayed


def _replayed(message):
    """A parked message's properties for its way back: its own, attempts reset."""
    headers = {k: v for k, v in (message.headers or {}).items()
               if not k.startswith("x-mesh-") and k != "x-death"}
    return {"application_headers": headers, "content_type": message.content_type,
            "content_encoding": message.content_encoding,
            "message_id": message.properties.get("message_id")}


@_dlq_read
def purge(amqp_uri, queue, group=None):
    """Drop everything in `queue`'s DLQ, or only the messages of the cause
    `group`; returns how many messages went."""
    if group is not None:
        with broker_connection(amqp_uri) as connection:
            channel, got = _drain(connection, base_queue(queue))
            chosen = _chosen(got, base_queue(queue), None, group)
            for message in chosen:
                channel.basic_ack(message.delivery_tag)
            channel.close()  # the other causes' messages stay parked
        return len(chosen)
    with broker_connection(amqp_uri) as connection:
        channel = connection.channel()
        try:  # purged as it is, whatever its type; one that does not exist is empty
            return channel.queue_purge(dlq_name(base_queue(queue)))
        except NotFound:
            return 0
        except InternalError as exc:
            # RabbitMQ 3.10 refuses a purge of a quorum queue with no process with a
            # bare 541 that names no cause; looked at again, then said as such
            raise _NoProcess() from exc
