"""The event machinery on the real broker: duplicates, retries, dead letters, outages."""
import datetime as dt
import json
import os
import pathlib
import socket
import subprocess
import sys
import uuid

import eventlet
import pytest
from kombu import Connection, Exchange, Queue
from nameko.exceptions import ConfigurationError
from sqlalchemy import String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from contracts.accounts import CONTRACT as ACCOUNTS
from mesh.data.db import Database
from mesh.data.tables import outbox
from mesh.messaging.handlers import handle_event
from mesh.messaging.outbox import Outbox, OutboxWriter
from mesh.ops import dlq
from mesh.testing import BrokerProxy, create_tables, wait_until

QUEUE = "evt-accounts-user_registered--flaky.on_user_registered"


class ToyBase(DeclarativeBase):
    pass


class Seen(ToyBase):
    __tablename__ = "seen"
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)




class FlakyService:
    """Fails while `failures_left` > 0, then records each event it handles."""

    name = "flaky"
    failures_left = 0
    db = Database(ToyBase)

    @handle_event(ACCOUNTS, "user_registered")
    def on_user_registered(self, event):
        if FlakyService.failures_left > 0:
            FlakyService.failures_left -= 1
            raise RuntimeError("the fault is still there")
        self.db.session.add(Seen(event_id=event["event_id"]))


class Announcer:
    """Only an outbox: it publishes what the test writes into it."""

    name = "announcer"
    db = Database(ToyBase)
    outbox = Outbox(ACCOUNTS)


def envelope(**data):
    return {"event_id": str(uuid.uuid4()), "type": "user_registered", "version": 1,
            "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "correlation_id": "test", "data": {"user_id": 1, "email": "a@example.com",
                                               "name": "A", **data}}


def publish(uri, body, content_type="application/json"):
    with Connection(uri) as connection:
        producer = connection.Producer()
        producer.publish(body if isinstance(body, bytes) else json.dumps(body),
                         exchange=Exchange("accounts.events", type="topic", durable=True),
                         routing_key="user_registered", content_type=content_type,
                         content_encoding="utf-8", declare=[
                             Exchange("accounts.events", type="topic", durable=True)])


def operator(*args, uri, check=True):
    """`mesh dlq ...` as an operator runs it, from the repository root."""
    env = dict(os.environ, AMQP_URI=uri)
    return subprocess.run([str(pathlib.Path(sys.executable).parent / "mesh"), "dlq", *args],
                          cwd=pathlib.Path(__file__).resolve().parents[3], env=env,
                          capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture
def flaky(mesh_containers, mesh_config, tmp_path):
    url = f"sqlite:///{tmp_path}/flaky.sqlite"
    engine = create_engine(url)
    create_tables(engine, ToyBase)
    FlakyService.failures_left = 0
    config = {**mesh_config, "DATABASE_URL_FLAKY": url, "EVENT_RETRY_DELAYS": [0.1, 0.2]}
    container = mesh_containers(FlakyService, config)
    container.start()

    def seen():
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(Seen))
    yield seen
    engine.dispose()


def test_a_handler_that_fails_twice_then_succeeds_completes(flaky, mesh_config):
    FlakyService.failures_left = 2
    publish(mesh_config["AMQP_URI"], envelope())
    wait_until(lambda: flaky() == 1)
    assert FlakyService.failures_left == 0
    assert dlq.messages(mesh_config["AMQP_URI"], QUEUE) == []


def test_the_same_event_twice_is_handled_once(flaky, mesh_config):
    event = envelope()
    publish(mesh_config["AMQP_URI"], event)
    publish(mesh_config["AMQP_URI"], event)
    publish(mesh_config["AMQP_URI"], envelope())
    wait_until(lambda: flaky() == 2)
    eventlet.sleep(0.5)
    assert flaky() == 2


def test_an_inbox_that_cannot_answer_retries_the_event_and_the_service_lives_on(
        flaky, mesh_config, tmp_path):
    uri = mesh_config["AMQP_URI"]
    engine = create_engine(f"sqlite:///{tmp_path}/flaky.sqlite")
    with engine.begin() as conn:  # the inbox goes missing under the running service
        conn.exec_driver_sql("ALTER TABLE inbox RENAME TO inbox_away")
    publish(uri, envelope())
    wait_until(lambda: len(dlq.messages(uri, QUEUE)) == 1)  # retried, then parked
    (parked,) = dlq.messages(uri, QUEUE)
    assert parked["attempts"] == 2 and "InboxUnavailable" in parked["error"]
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE inbox_away RENAME TO inbox")
    assert "replayed 1" in operator("replay", QUEUE, uri=uri).stdout
    wait_until(lambda: flaky() == 1)  # the same container handles it
    engine.dispose()


def test_a_handler_that_always_fails_is_parked_then_replayed(flaky, mesh_config):
    uri = mesh_config["AMQP_URI"]
    FlakyService.failures_left = 10**6
    event = envelope()
    publish(uri, event)
    wait_until(lambda: len(dlq.messages(uri, QUEUE)) == 1)
    (parked,) = dlq.messages(uri, QUEUE)
    assert parked["event_id"] == event["event_id"]
    assert parked["attempts"] == 2 and "the fault is still there" in parked["error"]
    assert flaky() == 0
    listed = operator("list", QUEUE, uri=uri)
    assert event["event_id"] in listed.stdout and "attempts=2" in listed.stdout
    FlakyService.failures_left = 0  # the fault is mended
    assert "replayed 0" in operator("replay", QUEUE, "--id", "no-such-id", uri=uri).stdout
    assert "replayed 1" in operator("replay", QUEUE + ".dlq", uri=uri).stdout
    wait_until(lambda: flaky() == 1)
    assert dlq.messages(uri, QUEUE) == []


def test_malformed_messages_go_straight_to_the_dlq(flaky, mesh_config):
    uri = mesh_config["AMQP_URI"]
    publish(uri, b"{not json")
    publish(uri, {"hello": "world"})
    publish(uri, envelope(email="not-an-email"))
    wait_until(lambda: len(dlq.messages(uri, QUEUE)) == 3)
    # handled concurrently, so parked in any order
    errors = sorted(m["error"] for m in dlq.messages(uri, QUEUE))
    assert errors[0].startswith("malformed") and "'hello'" in errors[0] + errors[1]
    assert any("email" in e for e in errors[:2])
    assert errors[2].startswith("undecodable")
    publish(uri, envelope())  # the service still works
    wait_until(lambda: flaky() == 1)
    refused = operator("purge", QUEUE, uri=uri, check=False)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert "purged 3" in operator("purge", QUEUE, "--yes", uri=uri).stdout
    assert dlq.messages(uri, QUEUE) == []


def test_events_committed_while_the_broker_is_away_are_published_after(
        mesh_containers, mesh_config, tmp_path):
    uri = mesh_config["AMQP_URI"]
    proxy = BrokerProxy()
    vhost = uri.rsplit("/", 1)[1]
    url = f"sqlite:///{tmp_path}/announcer.sqlite"
    engine = create_engine(url)
    create_tables(engine, ToyBase)
    config = {**mesh_config, "DATABASE_URL_ANNOUNCER": url,
              "AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"}
    container = mesh_containers(Announcer, config)
    container.start()
    with Connection(uri) as connection:  # the spy talks to the broker directly
        # an outbox publishes on its own service's exchange
        spy = Queue(f"spy-{uuid.uuid4().hex[:8]}", exchange=Exchange(
            "announcer.events", type="topic", durable=True), routing_key="#",
            auto_delete=True)(connection.channel())
        spy.declare()
        proxy.block()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        writer = OutboxWriter(ACCOUNTS, {"request_id": "outage"}, lambda: None)
        with Session(engine) as session:
            ids = [writer.add(session, "user_registered",
                              {"user_id": i, "email": f"u{i}@example.com", "name": "U"})
                   ["event_id"] for i in range(3)]
            session.commit()
        eventlet.sleep(3)  # the relay polls, fails and backs off meanwhile
        assert spy.get() is None
        proxy.unblock()
        got = [json.loads(wait_until(lambda: spy.get(no_ack=True), 30,
                                     "the relay to publish").body)["event_id"]
               for _ in range(3)]
        assert got == ids

    def unsent():
        with Session(engine) as session:
            return session.execute(outbox.select().where(
                outbox.c.published_at.is_(None))).all()
    wait_until(lambda: unsent() == [])  # marked sent just after publishing
    container.kill()
    proxy.close()
    engine.dispose()


def test_an_event_no_queue_takes_stays_in_the_outbox_until_one_does(
        mesh_containers, mesh_config, tmp_path, monkeypatch):
    from mesh.messaging import outbox as outbox_module

    monkeypatch.setattr(outbox_module, "UNROUTABLE_RETRY", 0.5)
    uri = mesh_config["AMQP_URI"]
    url = f"sqlite:///{tmp_path}/announcer.sqlite"
    engine = create_engine(url)
    create_tables(engine, ToyBase)
    container = mesh_containers(Announcer, {**mesh_config, "DATABASE_URL_ANNOUNCER": url})
    container.start()
    writer = OutboxWriter(ACCOUNTS, {"request_id": "lonely"}, lambda: None)
    with Session(engine) as session:
        event_id = writer.add(session, "user_registered",
                              {"user_id": 1, "email": "u@example.com", "name": "U"})["event_id"]
        session.commit()

    def published_at():
        with Session(engine) as session:
            return session.scalar(select(outbox.c.published_at)
                                  .where(outbox.c.event_id == event_id))
    eventlet.sleep(3)  # published and returned by the broker, more than once
    assert published_at() is None
    with Connection(uri) as connection:  # now a handler's queue is there
        late = Queue(f"late-{uuid.uuid4().hex[:8]}", exchange=Exchange(
            "announcer.events", type="topic", durable=True), routing_key="#",
            auto_delete=True)(connection.channel())
        late.declare()
        wait_until(published_at, 10, "the event to be published")
        message = wait_until(lambda: late.get(no_ack=True), 10, "the event to arrive")
        assert json.loads(message.body)["event_id"] == event_id
    container.kill()
    engine.dispose()


def test_a_replay_into_a_missing_queue_is_refused_and_moves_nothing(mesh_config):
    uri = mesh_config["AMQP_URI"]
    ghost = f"evt-ghost-{uuid.uuid4().hex[:8]}"  # a handler that never ran here
    with Connection(uri) as connection:
        connection.Producer().publish(json.dumps(envelope()), routing_key=f"{ghost}.dlq",
                                      declare=[Queue(f"{ghost}.dlq", routing_key=f"{ghost}.dlq")],
                                      content_type="application/json")
    refused = operator("replay", ghost, uri=uri, check=False)
    assert refused.returncode == 1 and "does not exist" in refused.stderr
    assert len(dlq.messages(uri, ghost)) == 1  # still parked


def test_a_poison_event_is_bounded_then_parked_on_a_quorum_queue(
        mesh_containers, mesh_config, tmp_path, queue_type):
    """A message whose consumer keeps dying on it (it is never acked) is moved to
    the DLQ the operator knows after QUEUE_DELIVERY_LIMIT deliveries on a quorum
    queue; a classic queue has no such limit, and keeps it."""
    uri = mesh_config["AMQP_URI"]
    url = f"sqlite:///{tmp_path}/flaky.sqlite"
    engine = create_engine(url)
    create_tables(engine, ToyBase)
    config = {**mesh_config, "DATABASE_URL_FLAKY": url, "QUEUE_DELIVERY_LIMIT": 2}
    container = mesh_containers(FlakyService, config)
    container.start()  # declares its queue (and, for quorum, its DLQ)
    container.stop()
    event = envelope()
    publish(uri, event)
    with Connection(uri) as connection:
        channel = connection.channel()
        for _ in range(3):  # a consumer that dies before it acks, three times
            message = wait_until(lambda: channel.basic_get(QUEUE, no_ack=False), 10,
                                 "the event to be delivered again")
            channel.basic_reject(message.delivery_tag, requeue=True)
        if queue_type == "classic":
            eventlet.sleep(0.5)
            assert dlq.messages(uri, QUEUE) == []
            assert channel.basic_get(QUEUE, no_ack=True) is not None  # still there
            return
        assert channel.basic_get(QUEUE, no_ack=True) is None
    (parked,) = wait_until(lambda: dlq.messages(uri, QUEUE), 10, "the event to be parked")
    assert parked["event_id"] == event["event_id"]
    assert parked["error"] == "dead-lettered by the broker: delivery_limit"
    FlakyService.failures_left = 0
    container = mesh_containers(FlakyService, config)
    container.start()
    assert "replayed 1" in operator("replay", QUEUE, uri=uri).stdout
    with Session(engine) as session:
        wait_until(lambda: session.scalar(select(func.count()).select_from(Seen)) == 1)
    engine.dispose()


def test_a_queue_made_with_another_type_is_refused_with_what_to_do(
        mesh_containers, mesh_config, tmp_path, queue_type):
    url = f"sqlite:///{tmp_path}/flaky.sqlite"
    create_tables(create_engine(url), ToyBase)
    config = {**mesh_config, "DATABASE_URL_FLAKY": url}
    mesh_containers(FlakyService, config).start()
    other = "classic" if queue_type == "quorum" else "quorum"
    with pytest.raises(ConfigurationError, match=f"queue {QUEUE} exists with other "
                                                 r"arguments .*docs \"Quorum queues\""):
        mesh_containers(FlakyService, {**config, "QUEUE_TYPE": other}).start()
