"""Load config.yaml (with `${ENV:default}`) and refuse bad settings in one line."""
import functools
import os
import re
import ssl
import warnings
from urllib.parse import urlsplit

import yaml
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["ConfigError", "load_config", "validate_config", "parse_rate",
           "database_setting", "setting", "without_passwords"]

RATE = re.compile(r"^(\d+)/(\d+)$")
DB_SCHEMES = ("sqlite", "postgresql")


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it."""


def _accepting(words):
    """Marks a validator with what it lets through, in words, for docs "Configuration"."""
    def mark(check):
        check.accepts = words
        return check
    return mark


@_accepting("`COUNT/SECONDS`, e.g. `10/60`")
def parse_rate(text):
    """`"10/60"` → `(10, 60)`: at most 10 events in 60 seconds."""
    match = RATE.match(text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValidationError("must look like COUNT/SECONDS, for example 10/60")
    return int(match[1]), int(match[2])


def database_setting(service):
    """The name of the setting that points `service` at its own database."""
    return f"DATABASE_URL_{service.upper()}"


def without_passwords(text):
    """`text` with the password of every URL in it hidden."""
    return re.sub(r"(://[^:/@;\s]*):[^@/;\s]*@", r"\1:***@", text)


@_accepting("`amqp://`, `amqps://` or `pyamqp://` URIs, `;`-separated")
def _amqp_uri(value):
    """One broker URI, or several separated by `;` (the nodes of a cluster, tried
    in turn): each is checked, and a bad one named by its place in the list (its
    password hidden), since kombu would only fail on it when it came to it."""
    entries = value.split(";")
    vhosts = set()
    for place, entry in enumerate(entries, 1):
        where = (f"entry {place} of {len(entries)} "
                 f"({without_passwords(entry.strip())!r}) "
                 if len(entries) > 1 else "")
        parts = urlsplit(entry.strip())
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("amqp", "amqps", "pyamqp") or not parts.hostname or port == -1:
            raise ValidationError(f"{where}must be an amqp://, amqps:// or pyamqp:// URI "
                                  "with a host (and a numeric port, if any)")
        vhosts.add(parts.path)
    if len(vhosts) > 1:
        raise ValidationError("every broker URI in the list must name the same vhost")


@_accepting("`sqlite://` or `postgresql://` URL")
def _database_url(value):
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValidationError("is not a database URL") from None
    if url.get_backend_name() not in DB_SCHEMES:
        raise ValidationError("must be a sqlite:// or postgresql:// URL")


@_accepting("origins, comma-separated")
def _origins(value):
    for origin in value.split(","):
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValidationError("must be a comma-separated list of origins, "
                                  "for example https://shop.example.com")


@_accepting("`redis://`, `rediss://` or `unix://` URL")
def _redis_url(value):
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValidationError("must be a redis://, rediss:// or unix:// URL")


@_accepting("`http://` or `https://` URL")
def _http_url(value):
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("must be an http:// or https:// URL, "
                              "for example http://localhost:4318")


# what RPC_TARGETS may set per target: (kind, lowest, highest)
CALL_POLICY_FIELDS = {
    "timeout": (float, 0.1, 300), "retries": (int, 0, 10),
    "retry_backoff": (float, 0, 60), "circuit_fail_max": (int, 1, 1000),
    "circuit_reset_seconds": (float, 0.1, 3600), "concurrency": (int, 1, 100000)}


# what each of them means (docs "Configuration")
CALL_POLICY_DOCS = {
    "timeout": "seconds an attempt waits for the answer (unset: `RPC_TIMEOUT`)",
    "retries": "times a read the contract marks idempotent is sent again after a "
               "timeout or transport failure",
    "retry_backoff": "seconds before the first retry (doubling)",
    "circuit_fail_max": "failed calls in a row that open the circuit (unset: "
                        "`CIRCUIT_FAIL_MAX`)",
    "circuit_reset_seconds": "seconds an open circuit refuses calls (unset: "
                             "`CIRCUIT_RESET_SECONDS`)",
    "concurrency": "calls one process has in flight to the service at most; one more "
                   "is refused at once (503, `Retry-After: 1`)"}

# settings config.yaml holds beyond Settings' fields, with their docs lines
OTHER_SETTINGS = {
    "DATABASE_URL_": "the service's own database, e.g. `DATABASE_URL_ORDERS=postgresql://"
                     "user@host/orders` (psycopg2); empty: SQLite at `MESH_DATA_DIR/"
                     "<service>.sqlite`. The operator creates each database (`createdb "
                     "orders`); `mesh migrate` (and every service as it starts) makes its "
                     "tables. A database that does not exist, or cannot be reached, stops "
                     "the service (and `mesh migrate`) with one line naming the setting "
                     "and the database, its password hidden",
    "MESH_LOG_LEVEL": "the root log level: `DEBUG`, `INFO`, `WARNING` or `ERROR`",
    "MESH_WORKER_LOG_LEVEL": "the level of the `mesh.worker` logger: `INFO` adds a line for "
                             "every answered call (see [Logs, metrics and traces]"
                             "(../operating/observability.md))"}


def _policy_range(name):
    """The bounds of RPC_TARGETS' `name`, for the top-level setting that is its default."""
    _, lowest, highest = CALL_POLICY_FIELDS[name]
    return validate.Range(min=lowest, max=highest)


def _call_value(where, value, kind, lowest, highest):
    numeric = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not numeric or not lowest <= value <= highest:
        what = "an integer" if kind is int else "a number"
        raise ValidationError(f"{where}: must be {what} from {lowest:g} to {highest:g}")
    return kind(value)


class CallTargets(fields.Field):
    """RPC_TARGETS: `default` and target services, each mapping a policy setting
    (CALL_POLICY_FIELDS) to its value; a blank value (`${ENV:}`) is unset."""

    accepts = "mapping"

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("must map default or a service to its call settings")
        targets = {}
        for target, policy in value.items():
            policy = {} if policy is None else policy
            if not isinstance(target, str) or not re.match(r"^[a-z_]+$", target) \
                    or not isinstance(policy, dict):
                raise ValidationError(f"{target}: must be a service's name mapping "
                                      "settings to values")
            unknown = sorted(set(policy) - set(CALL_POLICY_FIELDS))
            if unknown:
                raise ValidationError(f"{target}: unknown setting {unknown[0]!r} (known: "
                                      f"{', '.join(CALL_POLICY_FIELDS)})")
            targets[target] = {name: _call_value(f"{target}.{name}", v, *CALL_POLICY_FIELDS[name])
                               for name, v in policy.items() if v not in (None, "")}
        return targets


@_accepting("at least 16 characters")
def _broker_password(value):
    if value and len(value) < 16:  # empty: a development password (docs "Broker identities")
        raise ValidationError("must be at least 16 characters")


CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
             "none": ssl.CERT_NONE}


class TlsOptions(fields.Dict):
    """nameko's AMQP_SSL: what py-amqp wraps the broker's socket with. Empty
    values are left out (nothing set: None); files must be readable; `cert_reqs`
    is `required`, `optional` or `none` (a name, since YAML has no ssl constants)."""

    FILES = ("ca_certs", "certfile", "keyfile")
    accepts = "mapping of `ca_certs`, `certfile`, `keyfile`, `cert_reqs`"

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        options = {k: v for k, v in value.items() if v not in (None, "")}
        unknown = sorted(set(options) - {*self.FILES, "cert_reqs"})
        if unknown:
            raise ValidationError(f"unknown option(s) {', '.join(unknown)}; known: "
                                  f"{', '.join(self.FILES)}, cert_reqs")
        for name in self.FILES:
            if name in options and not os.access(options[name], os.R_OK):
                raise ValidationError(f"{name}: {options[name]} cannot be read")
        if "cert_reqs" in options:
            reqs = str(options["cert_reqs"]).lower().removeprefix("cert_")
            if reqs not in CERT_REQS:
                raise ValidationError("cert_reqs must be required, optional or none")
            options["cert_reqs"] = CERT_REQS[reqs]
        if "keyfile" in options and "certfile" not in options:
            raise ValidationError("keyfile needs certfile")
        return options or None


@_accepting("`package.module:ServiceClass`")
def _service_path(value):
    if not re.match(r"^[\w.]+:\w+$", value):
        raise ValidationError("must look like package.module:ServiceClass")


# no retention shorter than an hour: longer than any RPC deadline, relay retry
# or broker redelivery (docs "Retention")
RETENTION = validate.Range(min=3600, max=366 * 86400,
                           error="must be whole seconds from 3600 (an hour) to 31622400")


class Settings(Schema):
    """The settings of docs "Configuration"; anything else passes through."""

    class Meta:
        unknown = "include"

    AMQP_URI = fields.String(required=True, validate=_amqp_uri)
    """the RabbitMQ broker (and vhost); `amqps://` (port 5671) for TLS; a cluster's
    nodes as several URIs separated by `;`, tried in turn, each checked at start-up
    (a bad one is named by its place in the list, passwords hidden; all must name
    the same vhost). With `BROKER_IDENTITIES` its user and password are replaced by
    each process's own, so they need only be an administrator's where `mesh broker
    setup` runs"""
    GATEWAY_HOST = fields.String(required=True, validate=validate.Length(min=1))
    """where the gateway listens; nothing listens beyond loopback unless you set
    this"""
    GATEWAY_PORT = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=65535),
        error_messages={"invalid": "must be an integer from 1 to 65535"})
    """the gateway's port"""
    MESH_DATA_DIR = fields.String(required=True, validate=validate.Length(min=1))
    """where SQLite files (`<service>.sqlite`) and the development JWT secret live"""
    JWT_SECRET = fields.String(
        load_default=None, allow_none=True,
        validate=validate.Length(min=32, error="must be at least 32 characters"))
    """the key tokens are signed with; when unset, a development secret is generated once
    into `MESH_DATA_DIR/jwt_secret` (mode 0600) and never logged. **Set it in
    production**, the same in every gateway and accounts instance"""
    JWT_TTL_SECONDS = fields.Integer(strict=True, load_default=3600,
                                     validate=validate.Range(min=60, max=7 * 86400))
    """token lifetime"""
    USER_CACHE_SECONDS = fields.Float(load_default=60.0,
                                      validate=validate.Range(min=0, max=3600))
    """how long a gateway may reuse what `accounts` said of a token's user when it
    hears no event of a change (see "Revoking tokens" in the [security
    model](../concepts/security.md)); `0` asks on every request"""
    MESH_ADMIN_EMAIL = fields.Email(load_default=None, allow_none=True)
    """with `MESH_ADMIN_PASSWORD` (set both or neither): `accounts` creates this
    admin at start if the email is not registered yet (an existing account is left
    unchanged)"""
    MESH_ADMIN_PASSWORD = fields.String(load_default=None, allow_none=True,
                                        validate=validate.Length(min=8, max=128))
    """that admin's password"""
    AUTH_RATE_LIMIT = fields.String(load_default="10/60", validate=parse_rate)
    """logins (`POST /auth/token`) per client address and email: `COUNT/SECONDS`"""
    API_RATE_LIMIT = fields.String(load_default="1200/60", validate=parse_rate)
    """every API request (logins too) per user, or per client address when anonymous"""
    AUTH_ACCOUNT_RATE_LIMIT = fields.String(load_default="20/60", validate=parse_rate)
    """logins per email, from every address together"""
    AUTH_ADDRESS_RATE_LIMIT = fields.String(load_default="30/60", validate=parse_rate)
    """logins and registrations per client address, counted before the body is read"""
    PASSWORD_HASH_CONCURRENCY = fields.Integer(strict=True, load_default=4,
                                               validate=validate.Range(min=1, max=64))
    """argon2 hashes or checks one `accounts` process runs at once (about 120 ms and
    64 MiB each)"""
    PASSWORD_HASH_WAIT = fields.Float(load_default=1.0,
                                      validate=validate.Range(min=0, max=60))
    """seconds a request waits for its turn to hash before 503"""
    CIRCUIT_FAIL_MAX = fields.Integer(strict=True, load_default=5,
                                      validate=_policy_range("circuit_fail_max"))
    """after this many failed calls in a row (timeouts, transport errors, unknown
    service) a caller answers 503 for that service for `CIRCUIT_RESET_SECONDS`, then
    lets one probe call through. The default for every target of `RPC_TARGETS`"""
    CIRCUIT_RESET_SECONDS = fields.Float(load_default=10.0,
                                         validate=_policy_range("circuit_reset_seconds"))
    """seconds a caller answers 503 for a service whose circuit opened, before it
    lets one probe call through. The default for every target of `RPC_TARGETS`"""
    CORS_ORIGINS = fields.String(load_default=None, allow_none=True,
                                 validate=_origins)
    """browser origins allowed to call the API, comma-separated
    (`https://shop.example.com`); empty: CORS off"""
    REDIS_URL = fields.String(load_default=None, allow_none=True, validate=_redis_url)
    """where gateways count requests for the limits; empty counts in each gateway's
    memory, so set it when you run more than one gateway"""
    RATE_LIMIT_PREFIX = fields.String(load_default="mesh", validate=validate.Length(min=1))
    """the prefix of the limits' keys in `REDIS_URL`: each mesh that shares one Redis
    needs its own"""
    RATE_LIMIT_ON_ERROR = fields.String(load_default="closed",
                                        validate=validate.OneOf(("closed", "open")))
    """when `REDIS_URL` cannot answer within 1 s: `closed` answers 503 with
    `Retry-After: 5`, `open` lets the request through uncounted"""
    RPC_TIMEOUT = fields.Float(load_default=5.0, validate=_policy_range("timeout"))
    """seconds a caller (the gateway, `orders`) waits for a service before 504
    (`Busy` from a service); the request expires unstarted after as long. The
    default for every target of `RPC_TARGETS`"""
    RPC_TARGETS = CallTargets(load_default=dict)
    """how every process calls each service: a `default` entry, then one per target
    service with what differs (see below the table)"""
    EVENT_RETRY_DELAYS = fields.List(
        fields.Float(validate=validate.Range(min=0.001, max=86400)), load_default=[1, 5, 30],
        validate=validate.Length(max=20),
        error_messages={"invalid": "must be a list of seconds, for example [1, 5, 30]"})
    """seconds between a failing handler's retries, then the DLQ"""
    QUEUE_TYPE = fields.String(load_default="classic",
                               validate=validate.OneOf(("classic", "quorum")))
    """`quorum` on a RabbitMQ cluster (the production configs set it): see [Quorum queues](../operating/quorum-queues.md)"""
    QUEUE_DELIVERY_LIMIT = fields.Integer(strict=True, load_default=20,
                                          validate=validate.Range(min=1, max=1000))
    """a quorum queue's message delivered this often without an ack (its consumer
    keeps dying on it) goes to its DLQ; an RPC request is dropped"""
    SAGA_TIMEOUT_SECONDS = fields.Float(load_default=30.0,
                                        validate=validate.Range(min=0.1, max=86400))
    """an order stuck this long is rejected with reason `timeout` and compensated"""
    # docs [Retention](../operating/retention.md) says why each default outlives every redelivery
    OUTBOX_RETENTION_SECONDS = fields.Integer(strict=True, load_default=86400,
                                              validate=RETENTION)
    """a published outbox row is deleted this long after it was published (an
    unpublished one never is): see [Retention](../operating/retention.md)"""
    INBOX_RETENTION_SECONDS = fields.Integer(strict=True, load_default=7 * 86400,
                                             validate=RETENTION)
    """an inbox row (an event a handler has taken) is deleted this long after; at
    least an hour more than `EVENT_RETRY_DELAYS` add up to"""
    REQUEST_KEY_RETENTION_SECONDS = fields.Integer(strict=True, load_default=7 * 86400,
                                                   validate=RETENTION)
    """an RPC request key (`rpc_requests`) is deleted this long after its effect was
    applied"""
    IDEMPOTENCY_KEY_RETENTION_SECONDS = fields.Integer(strict=True, load_default=86400,
                                                       validate=RETENTION)
    """an order's `Idempotency-Key` (and its body's hash) is forgotten this long
    after the order last moved; the order stays"""
    PRUNE_INTERVAL_SECONDS = fields.Float(load_default=60.0,
                                          validate=validate.Range(min=1, max=86400))
    """how often each service prunes what is past these ages (each retention is at
    least 3600)"""
    DLQ_MAX_LENGTH = fields.Integer(strict=True, load_default=10000,
                                    validate=validate.Range(min=1, max=10_000_000))
    """messages one dead-letter queue holds; one more is refused by the broker and
    stays in its handler's retries (see [Dead letters](../operating/dead-letters.md))"""
    OPS_HOST = fields.String(load_default="127.0.0.1", validate=validate.Length(min=1))
    """where each service serves its own `/metrics` and `/health` (`0.0.0.0` in
    containers)"""
    OPS_PORTS = fields.Dict(
        keys=fields.String(), load_default=dict,
        values=fields.Integer(strict=True, validate=validate.Range(min=0, max=65535),
                              error_messages={"invalid": "must be an integer from 0 to "
                                                         "65535"}))
    """the port of a service's `/metrics` and `/health` on `OPS_HOST`; `0` turns them
    off. The gateway's `/metrics` is only here, never on `GATEWAY_PORT`. Replica N of
    a service (`--scale`) uses its port + (N − 1) × 100"""
    REPLICAS = fields.Dict(
        keys=fields.String(), load_default=dict,
        values=fields.Integer(strict=True, validate=validate.Range(min=1, max=16),
                              error_messages={"invalid": "must be an integer from 1 to "
                                                         "16"}))
    """processes of a service `mesh up` runs (`--scale` overrides): see [Scaling out](../operating/scaling-out.md)"""
    TRUSTED_PROXIES = fields.Integer(strict=True, load_default=0,
                                     validate=validate.Range(min=0, max=10))
    """proxies in front of the gateway that add `X-Forwarded-For` (1 behind one load
    balancer or ingress controller); rate limits then key on the client the proxy
    saw. Never more than there really are: a client can write any header it likes
    before them"""
    HTTP_MAX_CONNECTIONS = fields.Integer(strict=True, load_default=500,
                                          validate=validate.Range(min=1, max=100000))
    """connections the gateway holds at once; one more is answered 503 and closed"""
    HTTP_READ_TIMEOUT = fields.Float(load_default=10.0,
                                     validate=validate.Range(min=0.1, max=3600))
    """seconds one read or write of a request may wait before the gateway closes the
    connection"""
    HTTP_IDLE_TIMEOUT = fields.Float(load_default=30.0,
                                     validate=validate.Range(min=0.1, max=3600))
    """seconds a kept-alive connection may wait for its next request before the
    gateway closes it"""
    WORKERS = fields.Dict(
        keys=fields.String(), load_default=dict,
        values=fields.Integer(strict=True, validate=validate.Range(
            min=1, max=1000, error="must be an integer from 1 to 1000"),
                              error_messages={"invalid": "must be an integer from 1 to "
                                                         "1000"}))
    """workers one instance runs at once (nameko's `max_workers`, also the
    prefetch of each of its queues); on PostgreSQL no more than its share of the
    server's connections gives a connection each; all but 5 of the gateway's serve
    API requests, the rest are kept for probes, scrapes and docs"""
    OTEL_EXPORTER_OTLP_ENDPOINT = fields.String(load_default=None, allow_none=True,
                                                validate=_http_url)
    """send OpenTelemetry traces to this OTLP/HTTP collector, e.g.
    `http://localhost:4318`; the SDK's own `OTEL_*` variables (e.g.
    `OTEL_BSP_SCHEDULE_DELAY`) apply too"""
    MESH_LOG_FORMAT = fields.String(load_default="json",
                                    validate=validate.OneOf(("json", "text")))
    """`json` (one object per line) or `text`; `mesh up` on a terminal uses `text`
    unless this is set"""
    SLOW_CALL_SECONDS = fields.Float(load_default=1.0,
                                     validate=validate.Range(min=0.001, max=3600))
    """a worker slower than this is logged as a WARNING with `"slow": true`,
    whatever the level"""
    AMQP_SSL = TlsOptions(keys=fields.String(), load_default=None, allow_none=True)
    """TLS to the broker: nameko's `AMQP_SSL`, used by every connection of the mesh,
    as a YAML or JSON mapping, e.g. `{ca_certs: /etc/rabbitmq/ca.pem}`: `ca_certs`
    (the CA bundle the broker's certificate is checked against), `certfile` and
    `keyfile` (a client certificate), `cert_reqs` (`required`, the default,
    `optional` or `none`); an unknown key or a file that cannot be read stops
    start-up. See [Broker identities](../operating/broker-identities.md)"""
    # nameko's own key: the AMQP heartbeat of every consumer's connection
    HEARTBEAT = fields.Integer(strict=True, load_default=5,
                               validate=validate.Range(min=1, max=600))
    """seconds between AMQP heartbeats on every consumer's connection (nameko's
    key): a node that stops answering is left after two silent intervals; see [A cluster of brokers](../operating/cluster.md)"""
    BROKER_IDENTITIES = fields.Boolean(load_default=False)
    """`true`: each service, the gateway and the operators' commands connect as a
    RabbitMQ user of their own that may do only what its contract says; `mesh up`
    makes them first. See [Broker identities](../operating/broker-identities.md)"""
    BROKER_USER_PREFIX = fields.String(
        load_default="mesh-", validate=validate.Regexp(
            r"^[A-Za-z0-9_.-]{0,64}$", error="must be at most 64 letters, digits, _ . -"))
    """those users' names: `<prefix><service>`, `<prefix>gateway`,
    `<prefix>operator`"""
    BROKER_PASSWORDS = fields.Dict(
        keys=fields.String(), load_default=dict,
        values=fields.String(allow_none=True, validate=_broker_password))
    """each broker identity's password; when unset, a development password is generated
    once into `MESH_DATA_DIR/broker_password_<name>` (mode 0600). **Set them in
    production**: every process of an identity, and `mesh broker setup`, must read
    the same"""
    BROKER_MANAGEMENT_URL = fields.String(load_default=None, allow_none=True,
                                          validate=_http_url)
    """RabbitMQ's management API, which `mesh broker setup` uses (empty:
    `http://<AMQP_URI host>:15672`); its user and
    password, when the URL has them, else `AMQP_URI`'s, must be an administrator's"""
    SERVICES = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[a-z_]+$")),
                           values=fields.String(validate=_service_path), required=True)
    """what `mesh up` runs, one OS process each: `name: package.module:ServiceClass`"""

    @validates_schema
    def admin_pair(self, data, **kwargs):
        if bool(data.get("MESH_ADMIN_EMAIL")) != bool(data.get("MESH_ADMIN_PASSWORD")):
            raise ValidationError("set both MESH_ADMIN_EMAIL and MESH_ADMIN_PASSWORD, "
                                  "or neither", "MESH_ADMIN_PASSWORD")

    @validates_schema
    def call_targets(self, data, **kwargs):
        known = {"default", *data.get("SERVICES", {})}
        unknown = sorted(set(data.get("RPC_TARGETS", {})) - known)
        if unknown:  # a misspelt target would silently keep the defaults
            raise ValidationError(f"{unknown[0]}: is neither default nor a service in "
                                  "SERVICES", "RPC_TARGETS")

    @validates_schema
    def inbox_outlives_retries(self, data, **kwargs):
        # a retried event comes back after the delays: its inbox row must still be there
        retrying = sum(data.get("EVENT_RETRY_DELAYS") or [])
        if data.get("INBOX_RETENTION_SECONDS", 0) < retrying + 3600:
            raise ValidationError(
                f"must be at least an hour longer than EVENT_RETRY_DELAYS add up to "
                f"({retrying:g} s)", "INBOX_RETENTION_SECONDS")

    @validates_schema
    def database_urls(self, data, **kwargs):
        for setting in sorted(k for k in data if k.startswith("DATABASE_URL_")):
            if data[setting]:
                try:
                    _database_url(data[setting])
                except ValidationError as exc:
                    raise ValidationError(exc.messages, setting) from None


_SCHEMA = Settings()


def setting(config, name):
    """`config[name]`, or the settings schema's default when it is unset: the one
    place a setting's default is written. (A config `load_config` made holds them
    all already; a hand-made one, in a test or a shell, may not.)"""
    value = config.get(name)
    if value is not None:
        return value
    default = _SCHEMA.fields[name].load_default
    return default() if callable(default) else default


def _without_blanks(raw):
    # `${VAR:}` reads as None or ""; both mean "not set". A declared setting left
    # out takes its default (or is missing); a pass-through one stays None, as
    # `database_url` and the tests read them.
    return {k: (None if v == "" else v) for k, v in raw.items()
            if not (v in ("", None) and k in _SCHEMA.fields)}


def validate_config(raw, source="config"):
    """Return the checked config; raise ConfigError naming the first bad setting."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a mapping of settings")
    try:
        config = Settings().load(_without_blanks(raw))
    except ValidationError as exc:
        name, messages = sorted(exc.normalized_messages().items())[0]
        while isinstance(messages, dict):
            messages = next(iter(messages.values()))
        message = messages[0] if isinstance(messages, list) else messages
        shown = raw.get(name) if name in raw and "PASSWORD" not in name \
            and "SECRET" not in name else None
        if isinstance(shown, str):
            shown = without_passwords(shown)
        got = f" (got {shown!r})" if shown is not None else ""
        raise ConfigError(f"{source}: {name}: {message}{got}") from None
    config["MESH_DATA_DIR"] = os.path.abspath(config["MESH_DATA_DIR"])
    return config


def read_yaml(path):
    """config.yaml as nameko reads it, `${ENV:default}` expanded from the
    environment, except that a variable set blank reads as unset (see `_expand`)."""
    with warnings.catch_warnings():
        # nameko's CLI module imports the deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        from nameko.cli.main import ENV_VAR_MATCHER, setup_yaml_parser

    setup_yaml_parser()  # the implicit `${...}` resolver; the tags' constructors are ours
    expand = functools.partial(_expand, ENV_VAR_MATCHER)
    yaml.add_constructor("!env_var", expand, yaml.SafeLoader)
    yaml.add_constructor("!raw_env_var", functools.partial(expand, raw=True), yaml.SafeLoader)
    try:
        with open(path) as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: is not valid YAML: {exc}".splitlines()[0]) from None


def _expand(matcher, loader, node, raw=False):
    """nameko's `!env_var` and `!raw_env_var`, but `NAME=` (an env file's blank
    line) is unset, as `_without_blanks` takes it: `${NAME:default}` is then
    its default, in a nested value (REPLICAS, LOGGING) as at the top."""
    text = loader.construct_scalar(node)
    value = matcher.sub(lambda match: os.environ.get(match[1]) or match[2] or "", text)
    return value if raw or value == text else yaml.safe_load(value)


def load_config(path="config.yaml"):
    """Read and check `path`; raise ConfigError with a one-line message."""
    return validate_config(read_yaml(path), source=path)
