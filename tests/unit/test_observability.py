"""Log lines, `mesh up` output, trace headers and the status table, without a broker."""
import datetime as dt
import io
import json
import logging

import pytest

from mesh.core import logs
from mesh.core.tracing import valid_traceparent
from mesh.ops.status import render
from mesh.core.services import import_service
from mesh.runtime.supervisor import Supervisor
from mesh.runtime.telemetry import Telemetry
from mesh.testing import load_test_config

CONFIG = load_test_config("config.yaml")


@pytest.fixture
def captured():
    """A logger writing through the JSON formatter and context filter of config.yaml."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.MeshJsonFormatter())
    handler.addFilter(logs.WorkerContext())
    logger = logging.getLogger(f"test-{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logs.unbind()
    logs.set_process_service(None)


def test_a_json_line_carries_the_worker_context(captured):
    logger, lines = captured
    logs.set_process_service("orders")
    logger.info("outside any worker")
    logs.bind(service="orders", entrypoint="get_order", request_id="r-1")
    logger.info("inside %s", "a worker", extra={"duration_ms": 1.5})
    logs.unbind()
    outside, inside = lines()
    assert outside["service"] == "orders" and "request_id" not in outside
    assert outside["timestamp"].endswith("Z") and outside["level"] == "INFO"
    assert inside == {**inside, "message": "inside a worker", "entrypoint": "get_order",
                      "request_id": "r-1", "duration_ms": 1.5, "logger": logger.name}


def test_every_line_names_the_replica_and_host_of_a_scaled_service(captured):
    import socket

    logger, lines = captured
    logs.set_process_service("orders", 2)
    logger.info("outside any worker")
    logs.bind(service="orders", entrypoint="get_order", request_id="r-1")
    logger.info("inside a worker")
    logs.unbind()
    for line in lines():
        assert line["replica"] == 2 and line["host"] == socket.gethostname()
    logs.set_process_service("orders")  # run once: no replica number
    logger.info("alone")
    assert "replica" not in lines()[-1]


def test_an_extra_field_wins_over_the_context(captured):
    logger, lines = captured
    logs.bind(service="gateway", request_id="worker's")
    logger.info("access", extra={"request_id": "the request's"})
    assert lines()[0]["request_id"] == "the request's"


@pytest.mark.parametrize("seconds", [
    0.0, 1764979200.0, 1764979200.0005, 1764979200.0004999, 1764979200.9994999,
    1764979200.9999994, 1764979200.9999995, 1764979200.9999996, 1764979259.123456,
    4102444799.999, 951782400.5])  # a second's edges, rounding, a leap day
def test_a_timestamp_is_what_datetime_writes(seconds):
    expected = dt.datetime.fromtimestamp(seconds, dt.timezone.utc) \
        .isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert logs.utc_timestamp(seconds) == expected


def test_a_traceback_stays_inside_its_json_line(captured):
    logger, lines = captured
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    (line,) = lines()
    assert "RuntimeError: boom" in line["exc_info"]


def test_a_text_line_shows_the_request_id_only_when_there_is_one():
    formatter = logs.MeshTextFormatter()
    record = logging.LogRecord("mesh.worker", logging.INFO, __file__, 1, "get_order ok", (),
                               None)
    record.service, record.request_id = "orders", "r-9"
    assert formatter.format(record).endswith(" INFO orders [r-9] mesh.worker: get_order ok")
    record.request_id = None
    assert formatter.format(record).endswith(" INFO orders mesh.worker: get_order ok")


def test_context_is_per_greenthread():
    import eventlet

    seen = {}

    def worker(name):
        logs.bind(request_id=name)
        eventlet.sleep(0.01)  # let the other worker bind its own
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        logs.WorkerContext().filter(record)
        seen[name] = record.request_id

    pool = eventlet.GreenPool()
    for name in ("a", "b"):
        pool.spawn(worker, name)
    pool.waitall()
    assert seen == {"a": "a", "b": "b"}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_mesh_up_output_is_all_json_or_all_prefixed(fmt):
    out = io.StringIO()
    supervisor = Supervisor("config.yaml", CONFIG, {"orders": 1, "gateway": 1}, out=out,
                            log_format=fmt)
    supervisor.say("mesh", "starting orders, gateway")
    supervisor.say("orders", '{"level": "INFO", "service": "orders", "message": "hi"}\n')
    supervisor.say("orders", "Traceback (most recent call last):\n")
    lines = out.getvalue().splitlines()
    if fmt == "json":
        records = [json.loads(line) for line in lines]
        assert records[0]["service"] == "mesh" and records[1]["message"] == "hi"
        assert records[2] == {**records[2], "service": "orders",
                              "message": "Traceback (most recent call last):"}
    else:
        assert lines[0] == "mesh    | starting orders, gateway"
        assert lines[2] == "orders  | Traceback (most recent call last):"


@pytest.mark.parametrize("header,valid", [
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
    ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),
    ("garbage", False), ("", False), (None, False),
])
def test_only_a_well_formed_traceparent_is_continued(header, valid):
    assert valid_traceparent(header) == (header if valid else None)


@pytest.mark.parametrize("name", list(CONFIG["SERVICES"]))
def test_every_service_is_observed(name):
    service_cls = import_service(CONFIG["SERVICES"][name])
    # as nameko finds dependencies: inherited ones too (MeshService declares telemetry)
    assert any(isinstance(getattr(service_cls, attr), Telemetry) for attr in dir(service_cls))


def test_status_table_names_what_is_wrong():
    status = {"ok": False, "broker": "ok", "services": {
        "orders": {"ready": False, "instances": 0, "queues": {"rpc-orders": 3},
                   "dead_letters": {"evt-a--orders.on_a": 2},
                   "outbox": {"backlog": 4, "oldest_age_seconds": 12.5},
                   "problems": ["no running instance"]},
        "gateway": {"ready": True, "instances": 1, "queues": {}, "dead_letters": {},
                    "outbox": None, "problems": []}}}
    table = render(status).splitlines()
    assert table[0] == "broker: ok"
    orders = next(line for line in table if line.startswith("orders"))
    assert orders.split() == ["orders", "NO", "0", "3", "4", "12.5s", "2", "no", "running",
                              "instance"]
    gateway = next(line for line in table if line.startswith("gateway"))
    assert gateway.split() == ["gateway", "yes", "1", "-", "-", "-", "-"]
    assert table[-1].split() == ["2", "evt-a--orders.on_a.dlq"]


def test_a_line_orjson_refuses_is_written_all_the_same():
    record = logging.LogRecord("mesh.http.access", logging.INFO, __file__, 1,
                               "GET %s", ("/\ud800",), None)
    line = json.loads(logs.MeshJsonFormatter().format(record))
    assert line["message"] == "GET /\ud800" and line["level"] == "INFO"


def test_nameko_s_line_for_an_expected_error_is_dropped_and_others_kept():
    quiet = logs.QuietExpectedErrors()
    expected = logging.LogRecord("nameko.containers", logging.WARNING, __file__, 1,
                                 "(expected) error handling worker %s: %s", ("w", "x"), None)
    unexpected = logging.LogRecord("nameko.containers", logging.ERROR, __file__, 1,
                                   "error handling worker %s: %s", ("w", "x"), None)
    assert not quiet.filter(expected) and quiet.filter(unexpected)


def test_readiness_reuses_a_result_for_a_second():
    from mesh.messaging.health import Readiness

    now, checks = [100.0], []

    class Counted(Readiness):
        def check(self):
            checks.append(now[0])
            return True, {"broker": "ok"}

    readiness = Counted(services=[], clock=lambda: now[0])
    assert readiness.fresh() == (True, {"broker": "ok"})
    now[0] += 0.9
    readiness.fresh()
    assert len(checks) == 1  # a flood of /ready costs the broker nothing more
    now[0] += 0.2
    readiness.fresh()
    assert len(checks) == 2


def test_liveness_fails_once_the_event_loop_has_stalled():
    from mesh.runtime.probes import STALL_SECONDS, Probes

    now = [50.0]
    probes = Probes(clock=lambda: now[0])
    assert probes.alive() == (True, {"event_loop": "ok"})
    now[0] += STALL_SECONDS + 1  # no heartbeat ran: nothing else did either
    alive, checks = probes.alive()
    assert not alive and checks["event_loop"].startswith("stalled for")


def test_liveness_fails_for_a_wedged_consumer_only_while_the_broker_answers(mesh_config):
    import types

    from mesh.runtime.probes import CONSUMER_STALL_SECONDS, Probes

    now = [50.0]
    probes = Probes(clock=lambda: now[0])
    probes.container = types.SimpleNamespace(config=dict(mesh_config))
    rounds = []

    class Consumer:
        def on_iteration(self):
            rounds.append(now[0])

    consumer = Consumer()
    probes.watch(consumer)
    assert probes.alive() == (True, {"event_loop": "ok", "consumers": "ok"})
    now[0] += CONSUMER_STALL_SECONDS + 1
    probes.beat = now[0]  # the event loop runs; the consumer's loop does not
    alive, checks = probes.alive()  # this test's real broker answers
    assert not alive and checks["consumers"].startswith("not consuming for 61 s")
    consumer.on_iteration()  # it goes round again: nameko's own hook still runs
    assert rounds == [now[0]] and probes.alive()[0]

    now[0] += CONSUMER_STALL_SECONDS + 1
    probes.beat = now[0]
    probes.container.config["AMQP_URI"] = "pyamqp://guest:guest@127.0.0.1:1//"
    assert probes.alive() == (True, {"event_loop": "ok", "consumers": "ok"})  # broker down
