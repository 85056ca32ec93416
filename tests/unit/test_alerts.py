"""The alert rules and the dashboard, run by promtool (Debian's `prometheus`
package, installed by .ci/ensure-services) on series from two replicas: what
every replica reports alike (queues, outboxes, sagas) must count once."""
import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from tests.unit.test_k8s import K8S, kustomize, of_kind

REPO = pathlib.Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
# gauges of state the replicas share, each reported alike by every one of them
SHARED = {"mesh_outbox_backlog", "mesh_outbox_oldest_age_seconds", "mesh_saga_in_flight",
          "mesh_dlq_messages", "mesh_queue_messages", "mesh_rpc_consumers"}
LABELS = {"service": "orders", "queue": "rpc-orders", "status": "pending",
          "stock_state": "reserved", "payment_state": "requested"}


def promtool(*args):
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_the_alert_rules_are_valid():
    checked = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_once_when_it_should_and_not_before():
    tested = promtool("test", "rules", str(PROMETHEUS / "alerts.test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    proven = {case["alertname"] for test in tests for case in test["alert_rule_test"]
              if case["exp_alerts"]}
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    assert proven == {rule["alert"] for group in rules for rule in group["rules"]}


def test_the_prometheus_rule_for_kubernetes_holds_the_same_alerts():
    (rule,) = of_kind("PrometheusRule", kustomize(K8S / "monitoring"))
    assert rule["spec"] == yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())


def dashboard_queries():
    board = json.loads((REPO / "deploy/grafana/dashboards/mesh.json").read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"]
            for target in panel["targets"]]


def test_the_dashboard_counts_shared_state_once_however_many_replicas(tmp_path):
    """Two replicas report 3 for every shared gauge: each panel over them shows 3."""
    series = [{"series": "{}{{{}, instance=\"{}\"}}".format(
        name, ", ".join(f'{k}="{v}"' for k, v in LABELS.items()), instance),
        "values": "3x10"} for name in sorted(SHARED) for instance in ("a", "b")]
    cases = []
    for title, expr in dashboard_queries():
        if not SHARED & set(re.findall(r"\b(mesh_[a-z_]+)\b", expr)):
            continue
        outer = re.match(r"^\w+ by \(([^)]*)\)", expr)
        labels = [label.strip() for label in outer[1].split(",")]
        cases.append({"expr": expr, "eval_time": "5m", "exp_samples": [{
            "labels": "{" + ", ".join(f'{k}="{LABELS[k]}"' for k in labels) + "}",
            "value": 3}]})
    assert len(cases) >= len(SHARED) - 1, "the dashboard shows too few shared gauges"
    path = tmp_path / "dashboard.test.yml"
    path.write_text(yaml.safe_dump({"tests": [{"interval": "1m", "input_series": series,
                                               "promql_expr_test": cases}]}))
    tested = promtool("test", "rules", str(path))
    assert tested.returncode == 0, tested.stdout + tested.stderr
