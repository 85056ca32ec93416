"""A DLQ holds at most DLQ_MAX_LENGTH messages, and one more is kept, never dropped."""
import pytest
from kombu import Connection, Queue
from nameko.exceptions import ConfigurationError
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from mesh.core.metrics import Metrics
from mesh.messaging.handlers import dlq as dlq_queue
from mesh.messaging.health import queue_state
from mesh.messaging.topology import dlq_name
from mesh.ops import dlq
from mesh.runtime.telemetry import Telemetry
from mesh.testing import create_tables, wait_until
from tests.integration.events.test_events import (QUEUE, FlakyService, Seen, ToyBase,
                                                  envelope, operator, publish)


class WatchedFlaky(FlakyService):
    """The flaky handler with the metrics every mesh service has."""

    telemetry = Telemetry()


def test_a_full_dlq_refuses_the_next_event_which_waits_in_its_retries(
        mesh_containers, mesh_config, tmp_path):
    uri = mesh_config["AMQP_URI"]
    url = f"sqlite:///{tmp_path}/flaky.sqlite"
    engine = create_engine(url)
    create_tables(engine, ToyBase)
    FlakyService.failures_left = 10**6
    container = mesh_containers(WatchedFlaky, {
        **mesh_config, "DATABASE_URL_FLAKY": url, "EVENT_RETRY_DELAYS": [0.1, 0.2],
        "DLQ_MAX_LENGTH": 1})
    container.start()
    (metrics,) = [e for e in container.subextensions if isinstance(e, Metrics)]

    def sample(name, **labels):
        return metrics.registry.get_sample_value(name, {"service": "flaky", **labels})

    def parked():
        with Connection(uri) as connection:  # a passive declare: nothing is taken
            return (queue_state(connection, dlq_name(QUEUE)) or (0,))[0]

    def seen():
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(Seen))

    events = [envelope() for _ in range(3)]
    publish(uri, events[0])
    wait_until(lambda: parked() == 1, what="the first event parked")
    assert sample("mesh_dlq_refused_total", queue=QUEUE) == 0
    publish(uri, events[1])
    wait_until(lambda: parked() == 2 or sample("mesh_dlq_refused_total", queue=QUEUE),
               what="the second event parked or refused")
    sent = 2
    if parked() == 2:  # a quorum queue's bound is soft: it takes one message past it
        publish(uri, events[2])
        sent = 3
    held = parked()
    # each time it fails again it asks the DLQ again, and is refused again
    wait_until(lambda: sample("mesh_dlq_refused_total", queue=QUEUE) >= 2, timeout=15,
               what="the full DLQ to refuse the last event twice")
    assert parked() == held
    # what the alert reads: the DLQ at its bound
    assert sample("mesh_dlq_messages", queue=QUEUE) == held
    assert sample("mesh_dlq_max_messages") == 1
    assert seen() == 0

    FlakyService.failures_left = 0  # the fault is mended
    wait_until(lambda: seen() == 1, what="the refused event handled from its retries")
    assert [m["event_id"] for m in dlq.messages(uri, QUEUE)] == [
        e["event_id"] for e in events[:held]]
    assert f"replayed {held}" in operator("replay", QUEUE, uri=uri).stdout
    wait_until(lambda: seen() == sent, what="the parked events replayed")
    engine.dispose()


@pytest.fixture
def unbounded_dlq(mesh_config, tmp_path):
    """The flaky service's config, its DLQ made as releases before the bound
    made it: `(config, queue)`."""
    url = f"sqlite:///{tmp_path}/flaky.sqlite"
    create_tables(create_engine(url), ToyBase)
    bare = Queue(dlq_name(QUEUE), routing_key=dlq_name(QUEUE), durable=True)
    with Connection(mesh_config["AMQP_URI"]) as connection:
        bare(connection.channel()).declare()
    return {**mesh_config, "DATABASE_URL_FLAKY": url}, bare


def test_an_empty_dlq_made_without_the_bound_is_made_again_with_it(
        mesh_containers, unbounded_dlq):
    config = {**unbounded_dlq[0], "DLQ_MAX_LENGTH": 5}
    mesh_containers(FlakyService, config).start()
    with Connection(config["AMQP_URI"]) as connection:
        # declaring it as bounded now succeeds: it has the new arguments
        dlq_queue(QUEUE, config, FlakyService.name)(connection.channel()).declare()
        assert queue_state(connection, dlq_name(QUEUE)) == (0, 0)


def test_a_dlq_holding_messages_without_the_bound_is_kept_and_named(
        mesh_containers, unbounded_dlq):
    config, bare = unbounded_dlq
    with Connection(config["AMQP_URI"]) as connection:
        connection.Producer().publish(b"{}", routing_key=bare.name)
    with pytest.raises(ConfigurationError, match=rf"queue {dlq_name(QUEUE)} exists with "
                                                 r"other arguments .*\"Dead letters\""):
        mesh_containers(FlakyService, config).start()
    with Connection(config["AMQP_URI"]) as connection:
        assert queue_state(connection, dlq_name(QUEUE)) == (1, 0)  # nothing lost
