"""Load config.yaml (with `${ENV:default}`) and refuse bad settings in one line."""
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


def _database_url(value):
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValidationError("is not a database URL") from None
    if url.get_backend_name() not in DB_SCHEMES:
        raise ValidationError("must be a sqlite:// or postgresql:// URL")


def _origins(value):
    for origin in value.split(","):
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValidationError("must be a comma-separated list of origins, "
                                  "for example https://shop.example.com")


def _redis_url(value):
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValidationError("must be a redis://, rediss:// or unix:// URL")


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


def _call_value(where, value, kind, lowest, highest):
    numeric = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not numeric or not lowest <= value <= highest:
        what = "an integer" if kind is int else "a number"
        raise ValidationError(f"{where}: must be {what} from {lowest:g} to {highest:g}")
    return kind(value)


class CallTargets(fields.Field):
    """RPC_TARGETS: `default` and target services, each mapping a policy setting
    (CALL_POLICY_FIELDS) to its value; a blank value (`${ENV:}`) is unset."""

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
    GATEWAY_HOST = fields.String(required=True, validate=validate.Length(min=1))
    GATEWAY_PORT = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=65535),
        error_messages={"invalid": "must be an integer from 1 to 65535"})
    MESH_DATA_DIR = fields.String(required=True, validate=validate.Length(min=1))
    JWT_SECRET = fields.String(
        load_default=None, allow_none=True,
        validate=validate.Length(min=32, error="must be at least 32 characters"))
    JWT_TTL_SECONDS = fields.Integer(strict=True, load_default=3600,
                                     validate=validate.Range(min=60, max=7 * 86400))
    USER_CACHE_SECONDS = fields.Float(load_default=60.0,
                                      validate=validate.Range(min=0, max=3600))
    MESH_ADMIN_EMAIL = fields.Email(load_default=None, allow_none=True)
    MESH_ADMIN_PASSWORD = fields.String(load_default=None, allow_none=True,
                                        validate=validate.Length(min=8, max=128))
    AUTH_RATE_LIMIT = fields.String(load_default="10/60", validate=parse_rate)
    API_RATE_LIMIT = fields.String(load_default="1200/60", validate=parse_rate)
    AUTH_ACCOUNT_RATE_LIMIT = fields.String(load_default="20/60", validate=parse_rate)
    AUTH_ADDRESS_RATE_LIMIT = fields.String(load_default="30/60", validate=parse_rate)
    PASSWORD_HASH_CONCURRENCY = fields.Integer(strict=True, load_default=4,
                                               validate=validate.Range(min=1, max=64))
    PASSWORD_HASH_WAIT = fields.Float(load_default=1.0,
                                      validate=validate.Range(min=0, max=60))
    CIRCUIT_FAIL_MAX = fields.Integer(strict=True, load_default=5,
                                      validate=validate.Range(min=1, max=1000))
    CIRCUIT_RESET_SECONDS = fields.Float(load_default=10.0,
                                         validate=validate.Range(min=0.1, max=3600))
    CORS_ORIGINS = fields.String(load_default=None, allow_none=True,
                                 validate=_origins)
    REDIS_URL = fields.String(load_default=None, allow_none=True, validate=_redis_url)
    RATE_LIMIT_PREFIX = fields.String(load_default="mesh", validate=validate.Length(min=1))
    RATE_LIMIT_ON_ERROR = fields.String(load_default="closed",
                                        validate=validate.OneOf(("closed", "open")))
    RPC_TIMEOUT = fields.Float(load_default=5.0, validate=validate.Range(min=0.1, max=300))
    RPC_TARGETS = CallTargets(load_default=dict)
    EVENT_RETRY_DELAYS = fields.List(
        fields.Float(validate=validate.Range(min=0.001, max=86400)), load_default=[1, 5, 30],
        validate=validate.Length(max=20),
        error_messages={"invalid": "must be a list of seconds, for example [1, 5, 30]"})
    QUEUE_TYPE = fields.String(load_default="classic",
                               validate=validate.OneOf(("classic", "quorum")))
    QUEUE_DELIVERY_LIMIT = fields.Integer(strict=True, load_default=20,
                                          validate=validate.Range(min=1, max=1000))
    SAGA_TIMEOUT_SECONDS = fields.Float(load_default=30.0,
                                        validate=validate.Range(min=0.1, max=86400))
    # docs "Retention" says why each default outlives every redelivery
    OUTBOX_RETENTION_SECONDS = fields.Integer(strict=True, load_default=86400,
                                              validate=RETENTION)
    INBOX_RETENTION_SECONDS = fields.Integer(strict=True, load_default=7 * 86400,
                                             validate=RETENTION)
    REQUEST_KEY_RETENTION_SECONDS = fields.Integer(strict=True, load_default=7 * 86400,
                                                   validate=RETENTION)
    IDEMPOTENCY_KEY_RETENTION_SECONDS = fields.Integer(strict=True, load_default=86400,
                                                       validate=RETENTION)
    PRUNE_INTERVAL_SECONDS = fields.Float(load_default=60.0,
                                          validate=validate.Range(min=1, max=86400))
    DLQ_MAX_LENGTH = fields.Integer(strict=True, load_default=10000,
                                    validate=validate.Range(min=1, max=10_000_000))
    OPS_HOST = fields.String(load_default="127.0.0.1", validate=validate.Length(min=1))
    OPS_PORTS = fields.Dict(
        keys=fields.String(), load_default=dict,
        values=fields.Integer(strict=True, validate=validate.Range(min=0, max=65535),
                              error_messages={"invalid": "must be an integer from 0 to "
                                                         "65535"}))
    REPLICAS = fields.Dict(
        keys=fields.String(), load_default=dict,
        values=fields.Integer(strict=True, validate=validate.Range(min=1, max=16),
                              error_messages={"invalid": "must be an integer from 1 to "
                                                         "16"}))
    TRUSTED_PROXIES = fields.Integer(strict=True, load_default=0,
                                     validate=validate.Range(min=0, max=10))
    HTTP_MAX_CONNECTIONS = fields.Integer(strict=True, load_default=500,
                                          validate=validate.Range(min=1, max=100000))
    HTTP_READ_TIMEOUT = fields.Float(load_default=10.0,
                                     validate=validate.Range(min=0.1, max=3600))
    HTTP_IDLE_TIMEOUT = fields.Float(load_default=30.0,
                                     validate=validate.Range(min=0.1, max=3600))
    WORKERS = fields.Dict(
        keys=fields.String(), load_default=dict,
        values=fields.Integer(strict=True, validate=validate.Range(
            min=1, max=1000, error="must be an integer from 1 to 1000"),
                              error_messages={"invalid": "must be an integer from 1 to "
                                                         "1000"}))
    OTEL_EXPORTER_OTLP_ENDPOINT = fields.String(load_default=None, allow_none=True,
                                                validate=_http_url)
    MESH_LOG_FORMAT = fields.String(load_default="json",
                                    validate=validate.OneOf(("json", "text")))
    SLOW_CALL_SECONDS = fields.Float(load_default=1.0,
                                     validate=validate.Range(min=0.001, max=3600))
    AMQP_SSL = TlsOptions(keys=fields.String(), load_default=None, allow_none=True)
    # nameko's own key: the AMQP heartbeat of every consumer's connection
    HEARTBEAT = fields.Integer(strict=True, load_default=5,
                               validate=validate.Range(min=1, max=600))
    BROKER_IDENTITIES = fields.Boolean(load_default=False)
    BROKER_USER_PREFIX = fields.String(
        load_default="mesh-", validate=validate.Regexp(
            r"^[A-Za-z0-9_.-]{0,64}$", error="must be at most 64 letters, digits, _ . -"))
    BROKER_PASSWORDS = fields.Dict(
        keys=fields.String(), load_default=dict,
        values=fields.String(allow_none=True, validate=_broker_password))
    BROKER_MANAGEMENT_URL = fields.String(load_default=None, allow_none=True,
                                          validate=_http_url)
    SERVICES = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[a-z_]+$")),
                           values=fields.String(validate=_service_path), required=True)

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


def _blank_to_none(raw):
    # `${VAR:}` reads as None or ""; both mean "not set".
    return {k: (None if v == "" else v) for k, v in raw.items()}


def validate_config(raw, source="config"):
    """Return the checked config; raise ConfigError naming the first bad setting."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a mapping of settings")
    try:
        config = Settings().load(_blank_to_none(raw))
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
    """config.yaml as nameko reads it: `${ENV:default}` expanded from the environment."""
    with warnings.catch_warnings():
        # nameko's CLI module imports the deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()
    try:
        with open(path) as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: is not valid YAML: {exc}".splitlines()[0]) from None


def load_config(path="config.yaml"):
    """Read and check `path`; raise ConfigError with a one-line message."""
    return validate_config(read_yaml(path), source=path)
