"""docker-compose.yml, the Dockerfile and deploy/k8s agree with config.yaml.

Docker does not run on the development machines, so these files are checked by
parsing them and cross-checking what they name.
"""
import json
import os
import pathlib
import re

import pytest
import yaml

from mesh.core.config import read_yaml
from mesh.testing import load_test_config
from tests.unit.test_k8s import built, configmap, of_kind

REPO = pathlib.Path(__file__).resolve().parents[2]
SERVICES = list(load_test_config(str(REPO / "config.yaml"))["SERVICES"])


class PlainLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                  yaml.composer.Composer, yaml.constructor.SafeConstructor,
                  yaml.resolver.Resolver):
    """yaml.SafeLoader without the `${...}` resolver nameko adds to it globally."""

    def __init__(self, stream):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


def settings():
    """Every setting name config.yaml reads from the environment."""
    text = (REPO / "config.yaml").read_text()
    return set(re.findall(r"\$\{([A-Z_0-9]+):", text))


def compose():
    return yaml.load((REPO / "docker-compose.yml").read_text(), PlainLoader)["services"]


def test_config_yaml_reads_as_nameko_reads_it():
    raw = read_yaml(str(REPO / "config.yaml"))
    assert raw["AMQP_URI"].startswith("pyamqp://")


@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_every_service(service):
    entry = compose()[service]
    assert entry["command"] == ["serve", service]
    assert entry["image"] == "nameko-mesh:latest"
    unknown = set(entry["environment"]) - settings()
    assert not unknown, f"{service} sets unknown settings {unknown}"


def test_compose_databases_exist_and_secrets_are_required():
    init = (REPO / "deploy" / "postgres-init.sql").read_text()
    for service, entry in compose().items():
        for name, value in (entry.get("environment") or {}).items():
            if name.startswith("DATABASE_URL_"):
                assert f"CREATE DATABASE {value.rsplit('/', 1)[1]};" in init
            if name == "JWT_SECRET":
                assert ":?" in value  # compose refuses to start without one


@pytest.mark.parametrize("service", SERVICES)
def test_compose_services_log_in_to_the_broker_as_their_own_users(service):
    entry = compose()[service]
    environment = entry["environment"]
    assert environment["BROKER_IDENTITIES"] == "true"
    assert "@" not in environment["AMQP_URI"]  # no administrator's credentials
    passwords = {k: v for k, v in environment.items() if k.startswith("BROKER_PASSWORD_")}
    assert list(passwords) == [f"BROKER_PASSWORD_{service.upper()}"]
    assert all(":?" in value for value in passwords.values())  # required
    assert entry["depends_on"]["broker-setup"] == {
        "condition": "service_completed_successfully"}


def test_compose_sets_the_broker_up_first_with_every_identity():
    setup = compose()["broker-setup"]
    assert setup["command"] == ["broker", "setup"]
    environment = setup["environment"]
    assert set(environment) <= settings()
    assert {k for k in environment if k.startswith("BROKER_PASSWORD_")} == {
        f"BROKER_PASSWORD_{name.upper()}" for name in [*SERVICES, "operator"]}
    assert environment["AMQP_URI"].split("@")[1] == \
        compose()["orders"]["environment"]["AMQP_URI"].split("//")[1]


def test_compose_gateway_is_reachable_only_from_loopback():
    gateway = compose()["gateway"]
    assert gateway["environment"]["GATEWAY_HOST"] == "0.0.0.0"  # inside its container
    port = gateway["environment"]["GATEWAY_PORT"]
    assert gateway["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_prometheus_scrapes_every_ops_port_never_the_public_one():
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = {target for job in scrape["scrape_configs"]
               for group in job["static_configs"] for target in group["targets"]}
    config = load_test_config(str(REPO / "config.yaml"))
    assert targets == {f"{name}:{port}" for name, port in config["OPS_PORTS"].items()}
    assert set(config["OPS_PORTS"]) == set(SERVICES)
    assert set(name for name, _ in (t.split(":") for t in targets)) <= set(compose())
    # the series carry their own `service` label: a target label would rename it
    assert all("labels" not in group for job in scrape["scrape_configs"]
               for group in job["static_configs"])
    assert scrape["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in \
        compose()["prometheus"]["volumes"]


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus():
    services = compose()
    mounts = services["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/mesh.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    (source,) = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in services
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in \
        services["prometheus"]["volumes"]
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]


def dashboard():
    return json.loads((REPO / "deploy/grafana/dashboards/mesh.json").read_text())


def dashboard_metrics():
    """Every `mesh_*` series the Grafana dashboard queries."""
    return {name for panel in dashboard()["panels"] for target in panel["targets"]
            for name in re.findall(r"\b(mesh_[a-z_]+)\b", target["expr"])}


def test_dockerfile_builds_in_one_stage_and_runs_as_a_numeric_user_in_another():
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)
    assert stages == [("python:3.11-slim", "build"), ("python:3.11-slim", "run")]
    build, run = re.split(r"^FROM .* AS run$", text, flags=re.M)
    for path in ("contracts", "mesh", "services", "gateway.py", "config.yaml"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", build, re.M), path
    assert "pip install ." in build and "pip install" not in run
    assert "COPY --from=build /venv /venv" in run
    uid = re.search(r"^ARG UID=(\d+)$", run, re.M)[1]
    assert int(uid) >= 10000
    assert re.search(r"^USER \$\{UID\}:\$\{UID\}$", run, re.M)  # numeric, not a name
    assert 'ENTRYPOINT ["mesh", "--config", "/app/config.yaml"]' in run
    for template in (d["spec"]["template"] for d in built() if d["kind"] == "Deployment"
                     and d["metadata"]["name"] in SERVICES):
        assert template["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_dockerignore_keeps_the_venv_data_and_secrets_out():
    ignored = set((REPO / ".dockerignore").read_text().split("\n"))
    assert {".venv", "var", ".git", ".env", "*.pem", "*.key", "**/__pycache__"} <= ignored
    data_dir = load_test_config(str(REPO / "config.yaml"))["MESH_DATA_DIR"]
    # SQLite files and the development JWT secret
    assert os.path.relpath(data_dir, REPO) in ignored


def test_production_configs_use_quorum_queues():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert compose["x-service"]["environment"]["QUEUE_TYPE"] == "quorum"
    assert configmap()["data"]["QUEUE_TYPE"] == "quorum"
    (rabbitmq,) = of_kind("RabbitmqCluster")
    assert "default_queue_type = quorum" in rabbitmq["spec"]["rabbitmq"]["additionalConfig"]


def test_the_kubernetes_cluster_is_configured_as_the_cluster_test_runs():
    from tests.cluster.test_cluster import NODE_SETTINGS

    (rabbitmq,) = of_kind("RabbitmqCluster")
    lines = set(rabbitmq["spec"]["rabbitmq"]["additionalConfig"].splitlines())
    assert {f"{key} = {value}" for key, value in NODE_SETTINGS.items()} <= lines
