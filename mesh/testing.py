"""pytest plugin (entry point `mesh`): isolated broker, data and databases for tests.

Each test gets a RabbitMQ vhost and a MESH_DATA_DIR of its own; each session a
PostgreSQL database of its own. Each is deleted at the end, and nothing else is.

It patches nothing when it is imported (pytest imports every installed plugin in
every session): eventlet's monkey patch is the test suite's to apply, first thing
in its root conftest.py, or by running `nameko test`, as nameko's own plugin asks.
"""
from mesh.core.logs import quiet_eventlet_deprecation

quiet_eventlet_deprecation()  # a warnings filter: eventlet's import-time notice

import contextlib  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from unittest import mock  # noqa: E402
from urllib.parse import quote, unquote, urlsplit  # noqa: E402

import eventlet  # noqa: E402  (imported, never patched here)
import pytest  # noqa: E402

# Where the tests find their backing services (docs "Set up"): the machine's
# own by default, or the containers of docker-compose.backing.yml.
DEFAULTS = {"MESH_TEST_AMQP_URI": "pyamqp://guest:guest@127.0.0.1:5672/",
            "MESH_TEST_RABBIT_API": "http://127.0.0.1:15672",
            "MESH_TEST_POSTGRES": "postgresql://postgres:postgres@127.0.0.1:5432",
            "MESH_TEST_REDIS_URL": "redis://127.0.0.1:6379/0"}
AMQP_URI, RABBIT_API, POSTGRES_DSN, REDIS_URL = (
    os.environ.get(name, default) for name, default in DEFAULTS.items())


def pytest_addoption(parser):
    parser.addoption("--mesh-config", default="config.yaml",
                     help="the mesh config file the tests start from")


def pytest_configure(config):
    from mesh.core import codec

    codec.register()  # the services under test speak as `mesh serve` makes them


class RabbitAdmin:
    """Vhosts and queue listings through RabbitMQ's management HTTP API (as
    nameko's own test fixtures do), so tests need no root; `rabbitmqctl` (root or
    the rabbitmq user, on the broker's machine) when the API does not answer."""

    def __init__(self, amqp_uri=AMQP_URI, api=RABBIT_API):
        parts = urlsplit(amqp_uri.split(";")[0])
        self.host, self.port = parts.hostname, parts.port or 5672
        self.user, self.password = unquote(parts.username or "guest"), \
            unquote(parts.password or "guest")
        self.api = api.rstrip("/")

    def uri(self, vhost):
        return (f"pyamqp://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{quote(vhost, safe='')}")

    def _call(self, method, path, **kwargs):
        """The API's answer, or None when it does not answer at all."""
        import requests

        try:
            response = requests.request(method, f"{self.api}/api/{path}", timeout=30,
                                        auth=(self.user, self.password), **kwargs)
        except requests.ConnectionError:
            return None
        response.raise_for_status()
        return response

    def add_vhost(self, vhost):
        name = quote(vhost, safe="")
        if self._call("PUT", f"vhosts/{name}") is None:
            _rabbitmqctl("add_vhost", vhost)
            _rabbitmqctl("set_permissions", "-p", vhost, self.user, ".*", ".*", ".*")
            return
        self._call("PUT", f"permissions/{name}/{quote(self.user, safe='')}",
                   json={"configure": ".*", "write": ".*", "read": ".*"})

    def delete_vhost(self, vhost):
        """Delete `vhost` if it exists (one never made is no error)."""
        import requests

        try:
            if self._call("DELETE", f"vhosts/{quote(vhost, safe='')}") is None:
                _rabbitmqctl("delete_vhost", vhost)
        except requests.HTTPError as exc:
            if exc.response.status_code != 404:
                raise
        except subprocess.CalledProcessError:
            pass  # rabbitmqctl: no such vhost

    def delete_users(self, prefix):
        """Delete every user whose name starts with `prefix` (a test's own, made by
        `mesh broker setup` with a BROKER_USER_PREFIX that names its vhost)."""
        answer = self._call("GET", "users")
        names = [user["name"] for user in answer.json()] if answer is not None else \
            subprocess.run(["rabbitmqctl", "-q", "list_users", "--no-table-headers"],
                           check=True, capture_output=True, text=True,
                           timeout=60).stdout.split()
        for name in (n for n in names if n.startswith(prefix)):
            if answer is not None:
                self._call("DELETE", f"users/{quote(name, safe='')}")
            else:
                _rabbitmqctl("delete_user", name)

    def queue_types(self, vhost):
        answer = self._call("GET", f"queues/{quote(vhost, safe='')}",
                            params={"columns": "name,type"})
        if answer is not None:
            return {queue["name"]: queue["type"] for queue in answer.json()}
        out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost,
                              "--no-table-headers", "name", "type"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        return dict(line.split("\t") for line in out.splitlines() if "\t" in line)


def _rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                   timeout=60)


def queue_types(amqp_uri):
    """`{queue: "classic" | "quorum" | ...}` of the vhost `amqp_uri` names."""
    vhost = unquote(amqp_uri.rsplit("/", 1)[1]) or "/"
    return RabbitAdmin().queue_types(vhost)


@contextlib.contextmanager
def temporary_identities(amqp_uri):
    """Settings that turn broker identities on for the test vhost `amqp_uri` names,
    with users named after it; every user made under them goes at the end."""
    prefix = unquote(amqp_uri.rsplit("/", 1)[1]) + "-"
    try:
        yield {"BROKER_IDENTITIES": "true", "BROKER_USER_PREFIX": prefix}
    finally:
        RabbitAdmin().delete_users(prefix)


@contextlib.contextmanager
def temporary_vhost(prefix="mesh-test"):
    """A RabbitMQ vhost that exists only inside the block; yields its AMQP URI."""
    admin = RabbitAdmin()
    vhost = f"{prefix}-{uuid.uuid4().hex[:12]}"
    try:
        admin.add_vhost(vhost)  # inside: a vhost made before its permissions failed goes too
        yield admin.uri(vhost)
    finally:
        admin.delete_vhost(vhost)


@pytest.fixture(scope="session")
def mesh_config_path(request):
    return os.path.abspath(request.config.getoption("--mesh-config"))


def load_test_config(path, **env):
    """The project's config file as the given environment would give it."""
    from mesh.core.config import load_config

    blank = {k: "" for k in os.environ if k.startswith("DATABASE_URL_")}
    with mock.patch.dict(os.environ, {**blank, **{k: str(v) for k, v in env.items()}}):
        return load_config(path)


@pytest.fixture
def mesh_config(mesh_config_path, tmp_path):
    """Config for one test: a vhost and a data directory of its own.

    A vhost per test, because durable event queues outlive a test's services:
    shared, they would carry one test's undelivered events into the next.
    """
    with temporary_vhost() as uri:
        config = load_test_config(mesh_config_path, AMQP_URI=uri,
                                  MESH_DATA_DIR=tmp_path / "data",
                                  JWT_SECRET="test-secret-" + "x" * 32)
        config["OPS_PORTS"] = {}  # a running mesh, or a second instance, holds them
        yield config


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database for this session only, dropped at its end."""
    with temporary_postgres_databases() as make:
        yield make("session")


@contextlib.contextmanager
def temporary_postgres_databases():
    """Make PostgreSQL databases inside the block: ``url = make("orders")``; each
    one made is dropped at its end (and no other)."""
    import psycopg2

    made = []
    admin = psycopg2.connect(f"{POSTGRES_DSN}/postgres")
    admin.autocommit = True

    def make(label):
        name = f"mesh_test_{uuid.uuid4().hex[:10]}_{label}"
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{POSTGRES_DSN}/{name}"

    try:
        yield make
    finally:
        with admin.cursor() as cursor:
            for name in made:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_databases():
    """Make PostgreSQL databases for one test: ``url = postgres_databases("orders")``.

    Each service needs its own: their `outbox` and `inbox` tables share names.
    """
    with temporary_postgres_databases() as make:
        yield make


@pytest.fixture
def mesh_containers(mesh_config):
    """nameko's `container_factory`, but its containers are killed before the
    test's config (and any vhost made for it) is torn down. The container is
    the one `config` names (`container_config` names the mesh's)."""
    from nameko.containers import get_container_cls

    made = []

    def make(service_cls, config):
        container = get_container_cls(config)(service_cls, config)
        made.append(container)
        return container

    yield make
    for container in made:
        container.kill()


@pytest.fixture
def start_service(mesh_containers, mesh_config):
    """Start one service's container against the real broker, its schema migrated.

    ``start_service(InventoryService, DATABASE_URL_INVENTORY=postgres_url)``
    """
    from mesh.core.config import validate_config
    from mesh.data import migrations
    from mesh.runtime.serve import container_config

    def start(service_cls, **overrides):
        # checked as `mesh serve` checks config.yaml: a bad override fails here, by name
        config = validate_config({**mesh_config, **overrides}, source="start_service")
        migrations.upgrade(config, service_cls.name)
        container = mesh_containers(service_cls, container_config(config, service_cls.name))
        container.start()
        start.started.append(container)
        return container

    start.started = []
    return start


@pytest.fixture
def rpc_client(mesh_config):
    """A standalone RPC proxy as `nameko shell` has it: ``rpc_client.inventory.get_product``."""
    from nameko.standalone.rpc import ClusterRpcProxy

    proxy = ClusterRpcProxy(mesh_config, timeout=10)
    yield proxy.start()
    proxy.stop()


def _ephemeral_low(default=32768):
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port():
    """A loopback TCP port nobody listens on right now, below the kernel's
    ephemeral range: a port the kernel hands out (bind to 0) may be taken by any
    outgoing connection's source port before the process meant to listen on it
    starts, which a mesh opening dozens of broker connections made happen."""
    low = _ephemeral_low()
    for _ in range(200 if low > 10_000 else 0):
        port = random.randrange(10_000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # someone listens there (or just did)
            return port
    with socket.socket() as sock:  # a crowded machine: the kernel's choice after all
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_tables(engine, declarative_base):
    """A test service's tables straight from its models, with the platform's
    (mesh.data.tables), for services that have no migrations of their own."""
    from mesh.data import tables

    declarative_base.metadata.create_all(engine)
    tables.metadata.create_all(engine)


def wait_until(check, timeout=10, what="the condition", interval=0.05):
    """Poll `check()` until it returns something truthy, and return that; fail
    the test when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        eventlet.sleep(interval)
    return result


class BrokerProxy:
    """A TCP proxy on loopback to RabbitMQ that a test can cut and restore.

    Each connection's two pipes run in one pool and only its own greenthread
    closes its sockets, so no file descriptor is closed under a reader.
    """

    def __init__(self, target=("127.0.0.1", 5672)):
        self.target = target
        self.port = None
        self.pool = eventlet.GreenPool()
        self.open_sockets = set()
        self.server = None
        self.unblock()

    def unblock(self):
        listener = eventlet.listen(("127.0.0.1", self.port or 0))
        self.port = listener.getsockname()[1]
        self.server = eventlet.spawn(self._serve, listener)

    def block(self):
        self.server.kill()
        for sock in list(self.open_sockets):
            try:  # the pipes see the end, then their connection closes both sockets
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.block()
        self.pool.waitall()

    def _serve(self, listener):
        try:
            while True:
                client, _ = listener.accept()
                self.pool.spawn_n(self._connection, client)
        finally:
            listener.close()

    def _connection(self, client):
        try:
            upstream = eventlet.connect(self.target)
        except OSError:
            client.close()
            return
        self.open_sockets |= {client, upstream}
        pipes = [eventlet.spawn(self._pipe, client, upstream),
                 eventlet.spawn(self._pipe, upstream, client)]
        for pipe in pipes:
            pipe.wait()
        self.open_sockets -= {client, upstream}
        client.close()
        upstream.close()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


# --- the developer kit: what a team's own tests need (docs "Testing a service") ---

@pytest.fixture
def migrated_session(mesh_config_path, tmp_path):
    """A worker's kind of session (`mesh.data.db.UnitOfWork`) on a freshly
    migrated database of the named service (its SQLite file in this test's data
    directory, or `DATABASE_URL_<SERVICE>=...` given):
    ``session = migrated_session("orders")``. No broker is involved; the test
    commits where the platform would. Closed, and its engine disposed, after the
    test."""
    from sqlalchemy.orm import sessionmaker

    from mesh.data import migrations
    from mesh.data.db import UnitOfWork, database_url, make_engine

    made = []

    def make(service, **overrides):
        config = {**load_test_config(mesh_config_path, MESH_DATA_DIR=tmp_path / "data"),
                  **overrides}
        migrations.upgrade(config, service)
        engine = make_engine(database_url(config, service))
        session = UnitOfWork(engine, sessionmaker(bind=engine))
        made.append((session, engine))
        return session

    yield make
    for session, engine in made:
        session.close()
        engine.dispose()


class RecordingOutbox:
    """Stands in for a service's `Outbox` in a domain test: each `add` is checked
    against the contract as the real one checks it, then kept in `events` as
    `(type, data)` (and `envelopes`), with nothing written or published."""

    def __init__(self, service):
        from contracts import contract_for

        self.contract = contract_for(service)
        self.events, self.envelopes = [], []

    def add(self, session, event_type, data):
        from mesh.messaging.outbox import make_envelope

        envelope = make_envelope(self.contract, event_type, data)
        self.envelopes.append(envelope)
        self.events.append((event_type, envelope["data"]))
        return envelope

    def types(self):
        return [event_type for event_type, _ in self.events]


class ContractStub:
    """A contract-checked stand-in for a `ServiceRpc` in a unit test:
    ``inventory = ContractStub("inventory", get_prices={"prices": {"1": 250}})``.
    A call's arguments are loaded by the method's schema (bad ones raise its
    ValidationError, as the service would refuse them), the answer (a value, or
    a callable taking the loaded arguments) must fit the result schema, and a
    contract error given as the answer is raised. `calls` keeps `(method, args)`."""

    def __init__(self, service, **answers):
        from contracts import contract_for

        self.contract, self.answers, self.calls = contract_for(service), answers, []

    def __getattr__(self, method):
        declared = self.contract.method(method)

        def call(**kwargs):
            args = declared.args().load(kwargs)
            self.calls.append((method, args))
            if method not in self.answers:
                raise AssertionError(f"{self.contract.service}.{method} was called "
                                     "with no answer given to the stub")
            answer = self.answers[method]
            answer = answer(**args) if callable(answer) else answer
            if isinstance(answer, Exception):
                raise answer
            result = declared.result()
            try:
                errors = result.validate(result.dump(answer))
            except (AttributeError, TypeError, ValueError) as exc:  # cannot even dump it
                errors = f"{type(exc).__name__}: {exc}"
            assert not errors, f"the stub's answer breaks the contract: {errors}"
            return result.dump(answer)  # what the wire gives: declared fields, as JSON
        return call


class GatewayClient:
    """HTTP against a running gateway: ``client("GET", "/api/v1/me", token)``."""

    def __init__(self, base, keep_alive=True):
        """`keep_alive=False`: a connection per request, for a gateway that may be
        restarted under the client (a connection kept from the one before would
        fail a request, and none is sent again by itself: a POST may have acted)."""
        import requests

        self.base, self.http = base, requests.Session()
        if not keep_alive:
            self.http.headers["Connection"] = "close"

    def __call__(self, method, path, token=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.base + path, headers=headers, timeout=10,
                                 **kwargs)

    def token(self, email, password):
        """A bearer token, waiting out the moment before accounts is up."""
        for _ in range(50):
            response = self("POST", "/api/v1/auth/token",
                            json={"email": email, "password": password})
            if response.status_code == 200:
                return response.json()["access_token"]
            eventlet.sleep(0.1)
        raise AssertionError(f"no token for {email}: {response.text}")


@pytest.fixture
def emit_event(mesh_config):
    """Publish a contract event into this test's broker as its publisher's outbox
    would: ``emit_event("orders", "order_confirmed", data)``; the running
    handlers take it through their inbox, retries and DLQ. Returns the event id."""
    from mesh.ops.shell import publish_event

    return lambda service, event_type, data: publish_event(
        mesh_config, service, event_type, data)


@pytest.fixture
def deliver_twice(mesh_config):
    """Send one RPC request twice, with the same correlation id, as the broker
    redelivers a request whose service died before acknowledging it:
    ``deliver_twice("inventory.restock", product_id=1, quantity=4)``. Returns
    both replies' bodies, in the order they came."""
    import json

    from kombu import Connection, Exchange, Queue

    def deliver(routing_key, **kwargs):
        rpc_exchange = Exchange("nameko-rpc", type="topic", durable=True)
        reply_to, correlation_id = f"replies-{uuid.uuid4().hex}", uuid.uuid4().hex
        with Connection(mesh_config["AMQP_URI"]) as connection:
            replies = Queue(reply_to, exchange=rpc_exchange, routing_key=reply_to,
                            auto_delete=True)(connection.channel())
            replies.declare()
            producer = connection.Producer()
            for _ in range(2):
                producer.publish(json.dumps({"args": [], "kwargs": kwargs}),
                                 exchange=rpc_exchange, routing_key=routing_key,
                                 content_type="application/json",
                                 correlation_id=correlation_id, reply_to=reply_to)
            return [json.loads(wait_until(lambda: replies.get(no_ack=True), 10,
                                          "a reply").body) for _ in range(2)]
    return deliver
