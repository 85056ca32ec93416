"""deploy/k8s builds with kustomize and deploys as shipped: strict Kubernetes
schemas for the core kinds, the operators' documented fields for theirs, and
cross-checks of what each Deployment names (settings, secrets, ports, probes)
against config.yaml, the operators' generated Secrets and create-secrets.sh.

Kubernetes does not run on the development machines, so this is all offline:
`kubectl kustomize` builds, nothing is applied.
"""
import functools
import math
import pathlib
import re
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mesh.data import budget
from mesh.testing import load_test_config
from tests.unit.operator_schemas import SCHEMAS

REPO = pathlib.Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
CONFIG = load_test_config(str(REPO / "config.yaml"))
SERVICES = [name for name in CONFIG["SERVICES"] if name != "gateway"]
NAMESPACE = "nameko-mesh"
IMAGE = "registry.example.com/nameko-mesh:0.1.0"
KUBERNETES_VERSION = "1.32.0"  # the oldest release still supported upstream


def kustomize(path):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (for `kubectl kustomize`) is not installed")
    built = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(built) if doc]


@functools.cache
def _built():
    return tuple(kustomize(K8S))


def built():
    """The base, as `kubectl apply -k deploy/k8s` would send it."""
    return list(_built())


def of_kind(kind, docs=None):
    return [d for d in (docs or built()) if d["kind"] == kind]


def named(kind, name):
    (doc,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def configmap():
    return named("ConfigMap", "mesh-config")


def settings():
    """Every setting name config.yaml reads from the environment."""
    return set(re.findall(r"\$\{([A-Z_0-9]+):", (REPO / "config.yaml").read_text()))


def pod(name):
    return named("Deployment", name)["spec"]["template"]


def containers(template, init=True):
    spec = template["spec"]
    return spec["containers"] + (spec.get("initContainers", []) if init else [])


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def secret_refs(container):
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"],
                        e["valueFrom"]["secretKeyRef"]["key"])
            for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}


def _unrolled(text):
    """create-secrets.sh with each `for NAME in A B; do ... done` written out."""
    def unroll(loop):
        name, values, body = loop[1], loop[2].split(), loop[3]
        return "".join(body.replace(f"${{{name},,}}", value.lower())
                       .replace(f"${name}", value) for value in values)
    return re.sub(r"for (\w+) in ([\w ]+); do\n(.*?)done\n", unroll, text, flags=re.S)


def recipe_secrets():
    """`{secret: {keys}}` that create-secrets.sh makes."""
    text = _unrolled((K8S / "create-secrets.sh").read_text().replace("\\\n", " "))
    made = {}
    for command in re.findall(r"create secret generic (\S+)([^\n]*)", text):
        made[command[0].strip('"')] = set(re.findall(r"--from-literal=([A-Z_]+)=", command[1]))
    return made


def generated_secrets():
    """`{secret: {keys}}` the operators make for the resources in the base: the
    RabbitMQ Cluster Operator's `<cluster>-default-user` and CloudNativePG's
    `<cluster>-app` (from their documentation and source)."""
    made = {f"{r['metadata']['name']}-default-user":
            {"username", "password", "host", "port", "connection_string"}
            for r in of_kind("RabbitmqCluster")}
    made.update({f"{c['metadata']['name']}-app":
                 {"username", "password", "host", "port", "dbname", "uri", "jdbc-uri"}
                 for c in of_kind("Cluster")})
    return made


def test_the_base_is_one_namespace_one_image_and_labelled():
    docs = built()
    assert named("Namespace", NAMESPACE)
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "nameko-mesh"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]
    images = {c["image"] for name in SERVICES + ["gateway"] for c in containers(pod(name))}
    assert images == {IMAGE}
    for name in SERVICES + ["gateway"]:
        assert pod(name)["metadata"]["labels"]["app.kubernetes.io/part-of"] == "nameko-mesh"


def _core_kinds():
    """`(id, doc)` of every core-kind resource in the base (none without kubectl:
    the test that builds it says why)."""
    if shutil.which("kubectl") is None:
        return [("kubectl-missing", None)]
    return [(f"{d['kind']}/{d['metadata']['name']}", d) for d in _built()
            if (d["apiVersion"], d["kind"]) not in SCHEMAS]


@pytest.mark.parametrize("doc", [d for _, d in _core_kinds()],
                         ids=[i for i, _ in _core_kinds()])
def test_core_kinds_pass_the_strict_kubernetes_schemas(doc):
    if doc is None:
        kustomize(K8S)  # skips, saying why
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", [K8S, K8S / "monitoring"], ids=["base", "monitoring"])
def test_operator_resources_use_only_their_documented_fields(path):
    custom = [d for d in kustomize(path) if (d["apiVersion"], d["kind"]) in SCHEMAS]
    assert custom
    for doc in custom:
        jsonschema.validate(doc, SCHEMAS[(doc["apiVersion"], doc["kind"])])
    core = [d for d in kustomize(path) if (d["apiVersion"], d["kind"]) not in SCHEMAS]
    assert all(d["apiVersion"] in ("v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2",
                                   "networking.k8s.io/v1") for d in core)


def test_rabbitmq_is_a_three_node_operator_cluster():
    (rabbitmq,) = of_kind("RabbitmqCluster")
    assert rabbitmq["spec"]["replicas"] == 3
    # 3.13, not 4.x: see docs "Quorum queues" (DLQ reads and the delivery limit)
    assert re.match(r"^rabbitmq:3\.13\.\d+-management$", rabbitmq["spec"]["image"])


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_own_postgres_cluster_and_reads_its_uri(service):
    cluster = named("Cluster", f"{service}-db")
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": service, "owner": service}
    assert cluster["spec"]["instances"] >= 2
    for container in containers(pod(service)):
        refs = secret_refs(container)
        assert refs[f"DATABASE_URL_{service.upper()}"] == (f"{service}-db-app", "uri")
        # no other service's database
        assert [n for n in refs if n.startswith("DATABASE_URL_")] == \
            [f"DATABASE_URL_{service.upper()}"]


@pytest.mark.parametrize("name", SERVICES + ["gateway"])
def test_every_secret_a_container_reads_exists_with_its_key(name):
    known = {**generated_secrets(), **recipe_secrets()}
    for container in containers(pod(name)):
        for setting, (secret, key) in secret_refs(container).items():
            assert secret in known, f"{name} reads {setting} from unknown Secret {secret}"
            assert key in known[secret], f"{secret} has no key {key} ({setting})"
        # the broker administrator's credentials are the setup Job's alone
        assert "mesh-rabbitmq-default-user" not in {s for s, _ in secret_refs(container).values()}


@pytest.mark.parametrize("name", SERVICES + ["gateway"])
def test_each_service_logs_in_to_the_broker_as_its_own_user_only(name):
    (container,) = containers(pod(name), init=False)
    setting = f"BROKER_PASSWORD_{name.upper()}"
    passwords = {k: v for k, v in secret_refs(container).items()
                 if k.startswith("BROKER_PASSWORD_")}
    assert passwords == {setting: (f"mesh-broker-{name}", setting)}
    assert configmap()["data"]["BROKER_IDENTITIES"] == "true"
    broker = re.match(r"^amqp://([\w-]+):5672/$", configmap()["data"]["AMQP_URI"])
    assert broker[1] in {r["metadata"]["name"] for r in of_kind("RabbitmqCluster")}


def test_the_broker_setup_job_makes_every_identity_as_the_administrator():
    (job,) = of_kind("Job")
    template = job["spec"]["template"]
    (container,) = containers(template)
    assert container["args"] == ["broker", "setup"]
    refs = secret_refs(container)
    assert refs.pop("AMQP_URI") == ("mesh-rabbitmq-default-user", "connection_string")
    identities = [*SERVICES, "gateway", "operator"]
    assert refs == {f"BROKER_PASSWORD_{n.upper()}": (f"mesh-broker-{n}",
                                                     f"BROKER_PASSWORD_{n.upper()}")
                    for n in identities}
    assert set(CONFIG["BROKER_PASSWORDS"]) == set(identities)  # config.yaml reads them all
    known = {**generated_secrets(), **recipe_secrets()}
    for secret, key in secret_refs(container).values():
        assert key in known[secret]
    assert set(env_of(container)) <= settings()
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # the next apply runs it again


def test_the_jwt_secret_reaches_only_who_signs_or_checks_tokens():
    readers = {name for name in SERVICES + ["gateway"]
               for c in containers(pod(name)) if "JWT_SECRET" in env_of(c)}
    assert readers == {"accounts", "gateway"}
    admins = {name for name in SERVICES + ["gateway"]
              for c in containers(pod(name)) if "MESH_ADMIN_PASSWORD" in env_of(c)}
    assert admins == {"accounts"}
    assert recipe_secrets() == {
        "mesh-jwt": {"JWT_SECRET"},
        "mesh-admin": {"MESH_ADMIN_EMAIL", "MESH_ADMIN_PASSWORD"},
        **{f"mesh-broker-{n}": {f"BROKER_PASSWORD_{n.upper()}"}
           for n in [*SERVICES, "gateway", "operator"]}}


@pytest.mark.parametrize("name", SERVICES + ["gateway"])
def test_containers_set_only_known_settings(name):
    for container in containers(pod(name)):
        assert set(env_of(container)) <= settings()
        assert [e["configMapRef"]["name"] for e in container["envFrom"]] == ["mesh-config"]
    assert set(configmap()["data"]) <= settings()


@pytest.mark.parametrize("name", SERVICES + ["gateway"])
def test_pods_meet_the_restricted_pod_security_standard(name):
    spec = pod(name)["spec"]
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in containers(pod(name)):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        # where it writes: MESH_DATA_DIR (the image's /data) and /tmp, never the image
        assert set(mounts) == {"/data", "/tmp"}
        assert all("emptyDir" in volumes[v] for v in mounts.values())
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("service", SERVICES)
def test_services_migrate_first_then_probe_their_ops_port(service):
    template = pod(service)
    (migrate,) = template["spec"]["initContainers"]
    assert migrate["args"] == ["migrate", "--only", service]
    (container,) = containers(template, init=False)
    assert container["args"] == ["serve", service]
    port = CONFIG["OPS_PORTS"][service]
    assert container["ports"] == [{"name": "ops", "containerPort": port}]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "ops"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "ops"}
    startup = container["startupProbe"]
    # a slow start (its schema checked, consumers up) is not killed by liveness
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert configmap()["data"]["OPS_HOST"] == "0.0.0.0"


def test_the_gateway_is_ready_on_its_api_and_scraped_on_its_ops_port():
    template = pod("gateway")
    (container,) = containers(template)
    env = {name: e.get("value") for name, e in env_of(container).items()}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(env["GATEWAY_PORT"]), "ops": int(env["OPS_PORT_GATEWAY"])}
    assert ports["ops"] == CONFIG["OPS_PORTS"]["gateway"]
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "ops"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "ops"}
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(ports["ops"])
    # limits shared by every gateway, keyed on the client the ingress saw
    redis = re.match(r"^redis://([\w-]+):(\d+)/\d+$", env["REDIS_URL"])
    service = named("Service", redis[1])
    assert int(redis[2]) in {p["port"] for p in service["spec"]["ports"]}
    assert int(env["TRUSTED_PROXIES"]) == 1


def test_the_gateway_service_ingress_and_autoscaler_point_at_it():
    labels = pod("gateway")["metadata"]["labels"]
    service = named("Service", "gateway")
    assert service["spec"]["selector"].items() <= labels.items()
    (http,) = service["spec"]["ports"]
    assert http["targetPort"] == "http"
    (ingress,) = of_kind("Ingress")
    backends = [path["backend"]["service"] for rule in ingress["spec"]["rules"]
                for path in rule["http"]["paths"]]
    assert backends == [{"name": "gateway", "port": {"name": http["name"]}}]
    (autoscaler,) = of_kind("HorizontalPodAutoscaler")
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert autoscaler["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize("name", SERVICES + ["gateway"])
def test_every_deployment_has_replicas_and_a_disruption_budget(name):
    deployment = named("Deployment", name)
    if name != "gateway":  # the autoscaler owns the gateway's count
        assert deployment["spec"]["replicas"] >= 2
    budget = named("PodDisruptionBudget", name)
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_counts_every_process_that_may_share_its_database(service):
    """Each process takes an equal share of its PostgreSQL server's connections,
    counting REPLICAS_<SERVICE> processes (mesh.data.budget): in a rolling update
    the new pods run (up to the surge) while the old ones still drain, each
    holding its share, so as many as twice the Deployment's replicas."""
    deployment = named("Deployment", service)
    strategy = deployment["spec"].get("strategy", {})
    assert strategy.get("type", "RollingUpdate") == "RollingUpdate"
    surge = strategy.get("rollingUpdate", {}).get("maxSurge", "25%")  # Kubernetes' default
    replicas = deployment["spec"]["replicas"]
    surge = math.ceil(replicas * int(surge[:-1]) / 100) if isinstance(surge, str) else surge
    (serve,) = [c for c in containers(pod(service), init=False) if c["args"][0] == "serve"]
    counted = int(env_of(serve)[f"REPLICAS_{service.upper()}"]["value"])
    assert counted >= max(replicas + surge, 2 * replicas)
    # and each still has a share to run on, of CloudNativePG's default 100 (3 kept)
    assert (100 - 3 - budget.OPERATOR_MARGIN) // counted >= budget.MIN_SHARE


def test_the_pod_monitor_scrapes_every_mesh_pod_on_its_ops_port():
    (monitor,) = of_kind("PodMonitor", kustomize(K8S / "monitoring"))
    selector = monitor["spec"]["selector"]
    (expression,) = selector["matchExpressions"]
    for name in SERVICES + ["gateway"]:
        template = pod(name)
        labels = template["metadata"]["labels"]
        assert selector["matchLabels"].items() <= labels.items()
        assert labels[expression["key"]] in expression["values"]
        (container,) = containers(template, init=False)
        assert "ops" in {p["name"] for p in container["ports"]}
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["ops"]
    assert not any(d["kind"] == "PodMonitor" for d in built())  # needs the CRDs: opt-in
