import pytest

from mesh.core.config import ConfigError, setting
from mesh.testing import load_test_config


def load(**env):
    return load_test_config("config.yaml", **env)


def test_defaults_match_the_readme():
    config = load()
    assert config["GATEWAY_HOST"] == "127.0.0.1"
    assert config["GATEWAY_PORT"] == 8000
    assert config["AMQP_URI"] == "pyamqp://guest:guest@localhost:5672/"
    assert config["MESH_DATA_DIR"].endswith("/var")
    assert config["AUTH_RATE_LIMIT"] == "10/60"
    assert config["API_RATE_LIMIT"] == "1200/60"
    assert config["JWT_SECRET"] is None
    assert config["DATABASE_URL_INVENTORY"] is None


def test_environment_overrides():
    config = load(GATEWAY_PORT="9001", DATABASE_URL_ORDERS="postgresql://u@h/db")
    assert config["GATEWAY_PORT"] == 9001
    assert config["DATABASE_URL_ORDERS"] == "postgresql://u@h/db"


@pytest.mark.parametrize("setting,value", [
    ("GATEWAY_PORT", "abc"),
    ("GATEWAY_PORT", "70000"),
    ("AMQP_URI", "http://localhost"),
    ("JWT_SECRET", "too-short"),
    ("AUTH_RATE_LIMIT", "ten per minute"),
    ("API_RATE_LIMIT", "0/60"),
    ("DATABASE_URL_INVENTORY", "mysql://root@localhost/inventory"),
    ("DATABASE_URL_ACCOUNTS", "not a url"),
    ("RPC_TIMEOUT", "-1"),
    ("MESH_LOG_FORMAT", "xml"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
    ("OUTBOX_RETENTION_SECONDS", "60"),
    ("REQUEST_KEY_RETENTION_SECONDS", "1.5"),
    ("IDEMPOTENCY_KEY_RETENTION_SECONDS", "99999999999"),
    ("PRUNE_INTERVAL_SECONDS", "0"),
    ("DLQ_MAX_LENGTH", "0"),
    ("BROKER_IDENTITIES", "sometimes"),
    ("BROKER_USER_PREFIX", "mesh users/"),
    ("BROKER_MANAGEMENT_URL", "localhost:15672"),
])
def test_a_bad_value_is_one_line_naming_the_setting(setting, value):
    with pytest.raises(ConfigError) as caught:
        load(**{setting: value})
    message = str(caught.value)
    assert f": {setting}: " in message
    assert "\n" not in message


@pytest.mark.parametrize("uri,says", [
    ("pyamqp://guest:secret@rabbit-1:5672/;amqp//rabbit-2:5672/", "entry 2 of 2"),
    ("pyamqp://guest:secret@rabbit-1:5672/;pyamqp://guest:secret@rabbit-2:56x2/",
     "entry 2 of 2"),
    ("pyamqp://rabbit-1/;pyamqp://rabbit-2/shop", "same vhost"),
    ("pyamqp:///", "with a host"),
])
def test_a_bad_broker_uri_in_a_list_is_named(uri, says):
    with pytest.raises(ConfigError) as caught:
        load(AMQP_URI=uri)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert "secret" not in str(caught.value)
    config = load(AMQP_URI="pyamqp://guest:guest@rabbit-1:5672/;pyamqp://guest:guest@rabbit-2/")
    assert config["AMQP_URI"].count(";") == 1


def test_ops_ports_come_from_the_environment_and_are_checked():
    assert load()["OPS_PORTS"]["orders"] == 9103
    assert load(OPS_PORT_ORDERS="0")["OPS_PORTS"]["orders"] == 0
    with pytest.raises(ConfigError, match=r": OPS_PORTS: must be an integer from 0 to 65535"):
        load(OPS_PORT_ORDERS="http")


def test_admin_needs_email_and_password_together():
    with pytest.raises(ConfigError, match="MESH_ADMIN"):
        load(MESH_ADMIN_EMAIL="root@example.com")
    config = load(MESH_ADMIN_EMAIL="root@example.com", MESH_ADMIN_PASSWORD="long enough")
    assert config["MESH_ADMIN_EMAIL"] == "root@example.com"


def test_secrets_are_not_echoed():
    with pytest.raises(ConfigError) as caught:
        load(JWT_SECRET="hunter2")
    assert "hunter2" not in str(caught.value)


def test_broker_passwords_come_from_the_environment_and_are_not_echoed():
    assert load(BROKER_PASSWORD_ORDERS="x" * 16)["BROKER_PASSWORDS"]["orders"] == "x" * 16
    assert not load()["BROKER_IDENTITIES"]
    with pytest.raises(ConfigError, match=r": BROKER_PASSWORDS: must be at least 16") as caught:
        load(BROKER_PASSWORD_GATEWAY="hunter2")
    assert "hunter2" not in str(caught.value)


def test_a_missing_file_is_one_line():
    from mesh.core.config import load_config
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config("/nonexistent/config.yaml")


def test_workers_per_service_come_from_the_environment_and_are_checked():
    assert load()["WORKERS"]["gateway"] == 100 and load()["WORKERS"]["orders"] == 50
    assert load(WORKERS_GATEWAY="40")["WORKERS"]["gateway"] == 40
    with pytest.raises(ConfigError, match=r": WORKERS: must be an integer from 1 to 1000"):
        load(WORKERS_ORDERS="0")
    assert load(SLOW_CALL_SECONDS="0.25")["SLOW_CALL_SECONDS"] == 0.25


def test_a_setting_left_out_reads_as_the_schema_s_default():
    assert setting({}, "RPC_TIMEOUT") == 5.0
    assert setting({"RPC_TIMEOUT": 1.5}, "RPC_TIMEOUT") == 1.5
    assert setting({}, "EVENT_RETRY_DELAYS") == [1, 5, 30]
    assert setting({}, "OPS_PORTS") == {}  # a fresh one each time
    assert setting({}, "REDIS_URL") is None


def test_retention_defaults_match_the_readme_and_the_inbox_outlives_the_retries():
    config = load()
    assert [config[f"{name}_RETENTION_SECONDS"] for name in (
        "OUTBOX", "INBOX", "REQUEST_KEY", "IDEMPOTENCY_KEY")] == [
        86400, 7 * 86400, 7 * 86400, 86400]
    assert (config["PRUNE_INTERVAL_SECONDS"], config["DLQ_MAX_LENGTH"]) == (60, 10000)
    assert load(INBOX_RETENTION_SECONDS="3700")["INBOX_RETENTION_SECONDS"] == 3700
    with pytest.raises(ConfigError, match="INBOX_RETENTION_SECONDS: must be at least an "
                                          r"hour longer than EVENT_RETRY_DELAYS .*\(7236 s\)"):
        load(INBOX_RETENTION_SECONDS="3700", EVENT_RETRY_DELAYS="[36, 7200]")


def test_a_retention_rule_naming_no_setting_fails_at_start_up():
    import types

    from nameko.exceptions import ConfigurationError

    from mesh.data.retention import Expiring, Rule
    from mesh.data.tables import inbox

    keys = Expiring(Rule("keys", inbox, inbox.c.processed_at, "KEYS_RETENTON_SECONDS"))
    keys.container = types.SimpleNamespace(config={})
    with pytest.raises(ConfigurationError, match="no setting KEYS_RETENTON_SECONDS"):
        keys.setup()


@pytest.mark.parametrize("name,default", [
    ("RATE_LIMIT_PREFIX", "mesh"),             # text
    ("AUTH_RATE_LIMIT", "10/60"),              # text a validator reads
    ("QUEUE_TYPE", "classic"),                 # one of some words
    ("RPC_TIMEOUT", 5.0),                      # a number
    ("DLQ_MAX_LENGTH", 10000),                 # an integer
    ("EVENT_RETRY_DELAYS", [1, 5, 30]),        # a list
    ("REDIS_URL", None),                       # nothing by default
])
def test_a_blank_value_reads_as_not_set_so_the_default_applies(name, default):
    # `NAME=` in a shell or an env file: "unset", not "make it empty"
    assert load(**{name: ""})[name] == default


def test_a_blank_variable_takes_config_yaml_s_default_in_nested_values_too():
    config = load(GATEWAY_PORT="", REPLICAS_ORDERS="", WORKERS_GATEWAY="",
                  MESH_LOG_FORMAT="", MESH_LOG_LEVEL="", MESH_WORKER_LOG_LEVEL="")
    assert config["GATEWAY_PORT"] == 8000
    assert config["REPLICAS"]["orders"] == 1 and config["WORKERS"]["gateway"] == 100
    logging = config["LOGGING"]
    assert logging["handlers"]["console"]["formatter"] == "json"
    assert logging["root"]["level"] == "INFO"
    assert logging["loggers"]["mesh.worker"]["level"] == "WARNING"


def test_a_blank_setting_without_a_default_says_it_is_missing():
    from mesh.core.config import validate_config
    with pytest.raises(ConfigError, match=r": AMQP_URI: Missing data for required field"):
        validate_config({**load(), "AMQP_URI": ""})
