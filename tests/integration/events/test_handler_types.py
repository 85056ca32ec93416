"""Service-pool, singleton and broadcast handlers: their queues as nameko names
them (mesh.messaging.topology), their dead letters where `mesh dlq` and `mesh status` look,
and each broadcast instance handling its own copy of an event once."""
import eventlet
import pytest
from kombu import Connection
from nameko.events import BROADCAST, SINGLETON
from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from contracts.accounts import CONTRACT as ACCOUNTS
from mesh.data.db import Database
from mesh.messaging.handlers import MeshEventHandler, handle_event
from mesh.messaging.health import service_queues
from mesh.messaging.topology import handler_queue
from mesh.ops import dlq
from mesh.testing import create_tables, queue_types, wait_until
from tests.integration.events.test_events import envelope, operator, publish

POOL = "evt-accounts-user_registered--watcher.on_pool"
ONE = "evt-accounts-user_registered"
EVERY = "evt-accounts-user_registered--watcher.on_every"


class Base(DeclarativeBase):
    pass


class Handled(Base):
    __tablename__ = "handled"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(36))


class WatcherService:
    name = "watcher"
    db = Database(Base)
    broadcasts_fail = False

    def _record(self, kind, event):
        self.db.session.add(Handled(kind=kind, event_id=event["event_id"]))

    @handle_event(ACCOUNTS, "user_registered")
    def on_pool(self, event):
        self._record("pool", event)

    @handle_event(ACCOUNTS, "user_registered", handler_type=SINGLETON)
    def on_one(self, event):
        self._record("singleton", event)

    @handle_event(ACCOUNTS, "user_registered", handler_type=BROADCAST,
                  reliable_delivery=False)
    def on_every(self, event):
        if WatcherService.broadcasts_fail:
            raise RuntimeError("this instance cannot take it")
        self._record("broadcast", event)


@pytest.fixture
def watchers(mesh_containers, mesh_config, tmp_path):
    """Two instances of one service sharing its database."""
    url = f"sqlite:///{tmp_path}/watcher.sqlite"
    engine = create_engine(url)
    create_tables(engine, Base)
    WatcherService.broadcasts_fail = False
    config = {**mesh_config, "DATABASE_URL_WATCHER": url, "EVENT_RETRY_DELAYS": [0.1]}
    containers = [mesh_containers(WatcherService, config) for _ in range(2)]
    for container in containers:
        container.start()

    def handled():
        with Session(engine) as session:
            return sorted(session.scalars(select(Handled.kind)))
    yield containers, handled
    engine.dispose()


def test_queues_are_named_as_nameko_names_them(watchers):
    containers, _ = watchers
    for container in containers:
        for handler in container.entrypoints:
            if isinstance(handler, MeshEventHandler):
                instance = handler.queue.name.rsplit("-", 1)[1] \
                    if handler.handler_type == BROADCAST else None
                assert handler.queue.name == handler_queue(
                    "accounts", "user_registered", "watcher", handler.method_name,
                    handler.handler_type, instance)
    assert dlq.handlers_of("watcher", WatcherService) == [
        (ONE, ONE), (EVERY, None), (POOL, POOL)]


def test_each_broadcast_instance_handles_its_copy_once(watchers, mesh_config):
    _, handled = watchers
    event = envelope()
    publish(mesh_config["AMQP_URI"], event)
    publish(mesh_config["AMQP_URI"], event)  # delivered twice: still once each
    wait_until(lambda: handled() == ["broadcast", "broadcast", "pool", "singleton"])
    eventlet.sleep(0.5)
    assert handled() == ["broadcast", "broadcast", "pool", "singleton"]


def test_a_broadcast_instance_s_dead_letters_are_where_operators_look(watchers,
                                                                       mesh_config):
    uri = mesh_config["AMQP_URI"]
    _, handled = watchers
    WatcherService.broadcasts_fail = True
    publish(uri, envelope())
    wait_until(lambda: len(dlq.messages(uri, EVERY)) == 2)  # one from each instance
    assert handled() == ["pool", "singleton"]
    with Connection(uri) as connection:
        seen = service_queues(connection, "watcher", False,
                              dlq.handlers_of("watcher", WatcherService))
    assert seen["dead_letters"] == {ONE: 0, POOL: 0, EVERY: 2}
    assert operator("list", EVERY, uri=uri).stdout.count("user_registered") == 2
    WatcherService.broadcasts_fail = False
    # each goes back to the instance it failed in
    replayed = operator("replay", EVERY, uri=uri, check=False)
    assert "replayed 2" in replayed.stdout, replayed.stderr
    wait_until(lambda: handled() == ["broadcast", "broadcast", "pool", "singleton"])


def test_lasting_queues_are_of_the_configured_type_and_instance_queues_classic(
        watchers, mesh_config, queue_type):
    uri = mesh_config["AMQP_URI"]
    WatcherService.broadcasts_fail = True
    publish(uri, envelope())  # a retry queue for each broadcast instance
    wait_until(lambda: len(dlq.messages(uri, EVERY)) == 2)
    types = queue_types(uri)
    lasting = {ONE, POOL, f"{EVERY}.dlq"}
    if queue_type == "quorum":  # DLQs made up front: the broker may dead-letter into them
        lasting |= {f"{ONE}.dlq", f"{POOL}.dlq"}
    assert {name: types.get(name) for name in lasting} == dict.fromkeys(lasting, queue_type)
    instances = [name for name in types if name.startswith(f"{EVERY}-")]
    assert len(instances) == 4  # two instances, each with its queue and a retry queue
    assert {types[name] for name in instances} == {"classic"}
