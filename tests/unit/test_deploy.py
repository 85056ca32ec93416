"""docker-compose.yml, the Dockerfile and deploy/k8s agree with config.yaml.

Docker does not run on the development machines, so these files are checked by
parsing them and cross-checking what they name.
"""
import json
import pathlib
import re

import pytest
import yaml

from mesh.core.config import read_yaml
from mesh.testing import load_test_config

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


def k8s_docs():
    for path in sorted((REPO / "deploy" / "k8s").glob("*.yaml")):
        yield from (doc for doc in yaml.load_all(path.read_text(), PlainLoader) if doc)


def deployments():
    return {doc["metadata"]["name"]: doc for doc in k8s_docs()
            if doc["kind"] == "Deployment"}


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


def test_compose_gateway_is_reachable_only_from_loopback():
    gateway = compose()["gateway"]
    assert gateway["environment"]["GATEWAY_HOST"] == "0.0.0.0"  # inside its container
    port = gateway["environment"]["GATEWAY_PORT"]
    assert gateway["ports"] == [f"127.0.0.1:{port}:{port}"]


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_deploys_every_service(service):
    deployment = deployments()[service]
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/name": service}
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == service
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == ["serve", service]
    names = {e["name"] for e in container["env"]}
    assert names <= settings() and {"AMQP_URI", "JWT_SECRET"} <= names
    if service != "gateway":
        assert f"DATABASE_URL_{service.upper()}" in names


def test_k8s_configmap_holds_only_known_settings():
    (configmap,) = [d for d in k8s_docs() if d["kind"] == "ConfigMap"]
    assert set(configmap["data"]) <= settings()


def test_k8s_gateway_probes_and_service_match():
    gateway = deployments()["gateway"]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = int(env["GATEWAY_PORT"])
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    (service,) = [d for d in k8s_docs() if d["kind"] == "Service"]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "gateway"}
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_services_expose_their_ops_port_to_probes_and_prometheus():
    ops_ports = load_test_config(str(REPO / "config.yaml"))["OPS_PORTS"]
    assert set(ops_ports) == set(SERVICES) - {"gateway"}
    for service, port in ops_ports.items():
        template = deployments()[service]["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert container["ports"] == [{"name": "ops", "containerPort": port}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "ops"}
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    (configmap,) = [d for d in k8s_docs() if d["kind"] == "ConfigMap"]
    assert configmap["data"]["OPS_HOST"] == "0.0.0.0"
    assert compose()["orders"]["environment"]["OPS_HOST"] == "0.0.0.0"


def test_prometheus_scrapes_every_service_where_it_listens():
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = {target for job in scrape["scrape_configs"]
               for group in job["static_configs"] for target in group["targets"]}
    config = load_test_config(str(REPO / "config.yaml"))
    gateway_port = compose()["gateway"]["environment"]["GATEWAY_PORT"]
    expected = {f"{name}:{port}" for name, port in config["OPS_PORTS"].items()}
    assert targets == expected | {f"gateway:{gateway_port}"}
    assert set(name for name, _ in (t.split(":") for t in targets)) <= set(compose())


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


def test_dockerfile_copies_what_the_services_import():
    dockerfile = (REPO / "Dockerfile").read_text()
    for path in ("contracts", "mesh", "services", "gateway.py", "config.yaml"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", dockerfile, re.M), path
    assert 'ENTRYPOINT ["mesh", "--config", "/app/config.yaml"]' in dockerfile


def test_production_configs_use_quorum_queues():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert compose["x-service"]["environment"]["QUEUE_TYPE"] == "quorum"
    configmap = yaml.safe_load((REPO / "deploy" / "k8s" / "configmap.yaml").read_text())
    assert configmap["data"]["QUEUE_TYPE"] == "quorum"
