"""`mesh broker setup`: the broker identities' users, permissions and exchanges,
and every handler's lasting queue bound to the events it takes.

Through RabbitMQ's management API as an administrator: BROKER_MANAGEMENT_URL,
by default `http://<AMQP_URI's host>:15672` with AMQP_URI's user and password.
Running it again leaves the broker as it was (users' passwords are set anew,
to the same ones). A user's topic permissions are written before its vhost
permissions, and when one must go, its vhost permissions are emptied first:
a user without topic permissions on an exchange may use every routing key
there, so no moment of setup grants more than the end state.

The handlers' queues are made here, as their handlers declare them, so that an
event published before its subscriber first starts waits in its queue: a
service's identity may not declare another's queue, so its outbox relay can
only look the queue up (mesh.messaging.subscribers), and a queue that its
handler has declared but not yet bound would miss an event meanwhile.
"""
from urllib.parse import quote, unquote, urlsplit

import requests

from mesh.core.config import setting
from mesh.messaging.identities import password, user_name
from mesh.messaging.subscribers import subscriber_queues
from mesh.ops.grants import NOTHING, exchanges, grants

__all__ = ["BrokerSetupError", "ManagementApi", "management_api", "vhost_of", "setup"]


class BrokerSetupError(Exception):
    """The management API refused or could not be reached; the message says which."""


class ManagementApi:
    """A few calls of RabbitMQ's management HTTP API, as one user."""

    def __init__(self, url, user, secret, timeout=30):
        self.url, self.auth, self.timeout = url.rstrip("/"), (user, secret), timeout

    def call(self, method, path, body=None, missing_ok=False):
        """The answer's JSON (None when empty, or a 404 with `missing_ok`)."""
        try:
            response = requests.request(method, f"{self.url}/api/{path}", json=body,
                                        auth=self.auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise BrokerSetupError(f"RabbitMQ's management API at {self.url} does not "
                                   f"answer ({type(exc).__name__}); enable it "
                                   "(rabbitmq-plugins enable rabbitmq_management) or set "
                                   "BROKER_MANAGEMENT_URL") from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code in (401, 403):
            raise BrokerSetupError(f"{method} {path}: {self.auth[0]!r} is not a RabbitMQ "
                                   "administrator; give BROKER_MANAGEMENT_URL (or AMQP_URI) "
                                   "one's user and password")
        if not response.ok:
            raise BrokerSetupError(f"{method} {path}: {response.status_code} "
                                   f"{response.text[:300]}")
        return response.json() if response.content else None


def vhost_of(amqp_uri):
    return unquote(urlsplit(amqp_uri.split(";")[0]).path[1:]) or "/"


def management_api(config):
    """The management API `mesh broker setup` uses, with its administrator."""
    broker = urlsplit(config["AMQP_URI"].split(";")[0])
    url = setting(config, "BROKER_MANAGEMENT_URL") or f"http://{broker.hostname}:15672"
    parts = urlsplit(url)
    user = unquote(parts.username or broker.username or "guest")
    secret = unquote(parts.password or broker.password or "guest")
    where = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return ManagementApi(where, user, secret)


def setup(config, api=None):
    """Make every exchange, handler queue and identity of `config`; returns
    `{identity: user}`."""
    api = api or management_api(config)
    vhost = quote(vhost_of(config["AMQP_URI"]), safe="")
    if api.call("GET", f"vhosts/{vhost}", missing_ok=True) is None:
        raise BrokerSetupError(f"vhost {vhost_of(config['AMQP_URI'])!r} (AMQP_URI) does "
                               "not exist on the broker")
    for name, kind in exchanges(config).items():
        api.call("PUT", f"exchanges/{vhost}/{quote(name, safe='')}",
                 {"type": kind, "durable": True, "auto_delete": False, "internal": False,
                  "arguments": {}})
    for source in config["SERVICES"]:
        for queues in subscriber_queues(config, source).values():
            for queue in queues:
                name = quote(queue.name, safe="")
                api.call("PUT", f"queues/{vhost}/{name}",
                         {"durable": True, "auto_delete": False,
                          "arguments": queue.queue_arguments})
                api.call("POST", f"bindings/{vhost}/e/{quote(queue.exchange.name, safe='')}"
                         f"/q/{name}", {"routing_key": queue.routing_key})
    made = {}
    for identity, grant in grants(config).items():
        user = user_name(config, identity)
        who = quote(user, safe="")
        api.call("PUT", f"users/{who}", {"password": password(config, identity), "tags": ""})
        had = {p["exchange"] for p in api.call("GET", f"users/{who}/topic-permissions")
               if p["vhost"] == vhost_of(config["AMQP_URI"])}
        if had - set(grant.topics):
            api.call("PUT", f"permissions/{vhost}/{who}",
                     {"configure": NOTHING, "write": NOTHING, "read": NOTHING})
            api.call("DELETE", f"topic-permissions/{vhost}/{who}", missing_ok=True)
        for exchange, (write, read) in grant.topics.items():
            api.call("PUT", f"topic-permissions/{vhost}/{who}",
                     {"exchange": exchange, "write": write, "read": read})
        api.call("PUT", f"permissions/{vhost}/{who}",
                 {"configure": grant.configure, "write": grant.write, "read": grant.read})
        made[identity] = user
    return made
