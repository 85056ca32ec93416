"""`hear_event` on the real broker: an instance hears each event on a queue of its
own, and after a lost connection it is told that it may have missed some."""
import datetime as dt
import uuid

from amqp.exceptions import NotFound
from kombu import Connection, Exchange

from contracts.accounts import CONTRACT as ACCOUNTS
from mesh.messaging.broadcasts import hear_event
from mesh.messaging.broker import publish
from mesh.testing import BrokerProxy, wait_until

EVENTS = Exchange("accounts.events", type="topic", durable=True)
HEARD = []


class ListenerService:
    name = "listener"

    @hear_event(ACCOUNTS, "user_disabled")
    def remember(self, event):
        HEARD.append(None if event is None else event["data"]["user_id"])


def disable(uri, user_id):
    publish(uri, {"event_id": str(uuid.uuid4()), "type": "user_disabled", "version": 1,
                  "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                  "correlation_id": "test", "data": {"user_id": user_id}},
            exchange=EVENTS, routing_key="user_disabled", declare=[EVENTS])


def queue_exists(uri, name):
    with Connection(uri) as connection:
        try:
            connection.default_channel.queue_declare(name, passive=True)
            return True
        except NotFound:
            return False


def test_after_a_lost_connection_an_instance_is_told_it_may_have_missed_events(
        mesh_containers, mesh_config):
    HEARD.clear()
    uri = mesh_config["AMQP_URI"]
    proxy = BrokerProxy()
    vhost = uri.rsplit("/", 1)[1]
    container = mesh_containers(ListenerService, {
        **mesh_config, "AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"})
    container.start()
    disable(uri, 1)
    wait_until(lambda: HEARD == [1], what="the first event heard")

    (handler,) = container.entrypoints
    proxy.block()
    wait_until(lambda: not queue_exists(uri, handler.queue.name),
               what="the instance's queue gone with its connection")
    disable(uri, 2)  # nobody hears this one
    proxy.unblock()
    wait_until(lambda: HEARD == [1, None], timeout=30, what="the reconnection told")

    disable(uri, 3)
    wait_until(lambda: HEARD == [1, None, 3], what="the next event heard")
    container.kill()
    proxy.close()
