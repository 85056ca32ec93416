"""`mesh dlq` on a quorum DLQ whose queue process is not running: the broker
answers `noproc` between a queue's declaration and its member's start, and
while its node restarts. The tools wait for it, then say so plainly. And
reads of DLQs in one process, which each hold what they read for a moment,
take turns."""
import json
import subprocess
import threading
import uuid
from urllib.parse import unquote

import eventlet
import pytest
from kombu import Connection, Queue

from mesh.ops import dlq
from mesh.testing import free_port
from tests.integration.events.test_events import envelope, operator

BASE = "evt-accounts-user_registered--audit.on_registered"


def _queue_process(uri, action):
    """Stop or restart the quorum queue process (its Ra server) of BASE's DLQ."""
    vhost = unquote(uri.rsplit("/", 1)[1])
    server = (f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"{vhost}">>, queue, '
              f'<<"{BASE}.dlq">>)), ra:{action}_server(quorum_queues, amqqueue:get_pid(Q)).')
    subprocess.run(["rabbitmqctl", "-q", "eval", server], check=True, capture_output=True,
                   timeout=60)


@pytest.fixture
def parked(uri):
    """One dead letter in a quorum DLQ whose process is stopped."""
    queue = Queue(f"{BASE}.dlq", routing_key=f"{BASE}.dlq", durable=True,
                  queue_arguments={"x-queue-type": "quorum"})
    event = envelope()
    with Connection(uri) as connection:
        connection.Producer().publish(json.dumps(event), routing_key=f"{BASE}.dlq",
                                      declare=[queue], content_type="application/json")
    _queue_process(uri, "stop")
    yield event
    _queue_process(uri, "restart")


def test_a_read_waits_for_the_queue_process_to_come_back(uri, parked):
    threading.Timer(1, _queue_process, (uri, "restart")).start()
    (message,) = dlq.messages(uri, BASE)
    assert message["event_id"] == parked["event_id"]


def test_a_queue_process_that_stays_away_is_said_plainly_and_nothing_moves(uri, parked):
    with pytest.raises(dlq.QueueUnavailable, match="no running queue process"):
        dlq.replay(uri, BASE)
    for action in (["list", BASE], ["purge", BASE, "--yes"]):
        said = operator(*action, uri=uri, check=False)
        assert said.returncode == 1 and "Traceback" not in said.stderr, said.stderr
        assert f"{BASE}.dlq has no running queue process" in said.stderr
    _queue_process(uri, "restart")
    (message,) = dlq.messages(uri, BASE)  # still parked
    assert message["event_id"] == parked["event_id"]


def test_reads_at_once_in_one_process_each_see_every_dead_letter(uri):
    base = f"evt-ghost-{uuid.uuid4().hex[:8]}"
    queue = Queue(f"{base}.dlq", routing_key=f"{base}.dlq")
    with Connection(uri) as connection:
        producer = connection.Producer()
        for _ in range(40):
            producer.publish(json.dumps(envelope()), routing_key=f"{base}.dlq",
                             declare=[queue], content_type="application/json")
    readers = [eventlet.spawn(dlq.messages, uri, base) for _ in range(4)]
    assert [len(reader.wait()) for reader in readers] == [40] * 4


def test_a_broker_that_does_not_answer_is_said_plainly(uri):
    away = uri.replace("127.0.0.1:5672", f"127.0.0.1:{free_port()}")
    assert away != uri
    for action in (["list", BASE], ["groups"], ["replay", BASE], ["purge", BASE, "--yes"]):
        said = operator(*action, uri=away, check=False)
        assert said.returncode == 1 and "Traceback" not in said.stderr, said.stderr
        assert f"mesh: dlq {action[0]}: the broker did not answer" in said.stderr
