"""The fields of the operators' resources that deploy/k8s uses, as their
documentation defines them, written as strict JSON schemas: a misspelt or
unknown field fails, as `kubectl apply` with the operator's CRD would.

Transcribed from each project's CRD reference (and checked against the CRDs of
rabbitmq/cluster-operator and cloudnative-pg/cloudnative-pg at their newest
commits when written); only what the mesh sets is here, each level closed.
"""

QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
RESOURCES = {"type": "object", "additionalProperties": False, "properties": {
    "requests": {"type": "object", "additionalProperties": QUANTITY},
    "limits": {"type": "object", "additionalProperties": QUANTITY}}}


def _resource(api_version, kind, spec):
    return {"type": "object", "additionalProperties": False,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"const": api_version}, "kind": {"const": kind},
                "metadata": {"type": "object", "required": ["name"]},
                "spec": spec}}


# https://www.rabbitmq.com/kubernetes/operator/using-operator (RabbitmqCluster spec)
RABBITMQ_CLUSTER = _resource("rabbitmq.com/v1beta1", "RabbitmqCluster", {
    "type": "object", "additionalProperties": False, "properties": {
        "replicas": {"type": "integer", "minimum": 0},
        "image": {"type": "string"},
        "resources": RESOURCES,
        "persistence": {"type": "object", "additionalProperties": False, "properties": {
            "storage": QUANTITY, "storageClassName": {"type": "string"}}},
        "rabbitmq": {"type": "object", "additionalProperties": False, "properties": {
            "additionalConfig": {"type": "string", "maxLength": 100000},
            "additionalPlugins": {"type": "array", "items": {"type": "string"}}}},
        "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0}}})

# https://cloudnative-pg.io/documentation/current/cloudnative-pg.v1/#postgresql-cnpg-io-v1-ClusterSpec
CNPG_CLUSTER = _resource("postgresql.cnpg.io/v1", "Cluster", {
    "type": "object", "additionalProperties": False, "required": ["instances"],
    "properties": {
        "instances": {"type": "integer", "minimum": 1},
        "imageName": {"type": "string"},
        "storage": {"type": "object", "additionalProperties": False, "properties": {
            "size": {"type": "string"}, "storageClass": {"type": "string"}}},
        "bootstrap": {"type": "object", "additionalProperties": False, "properties": {
            "initdb": {"type": "object", "additionalProperties": False, "properties": {
                "database": {"type": "string"}, "owner": {"type": "string"}}}}},
        "resources": RESOURCES,
        "monitoring": {"type": "object", "additionalProperties": False, "properties": {
            "enablePodMonitor": {"type": "boolean"}}}}})

_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
    "matchExpressions": {"type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "required": ["key", "operator"], "properties": {
            "key": {"type": "string"},
            "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
            "values": {"type": "array", "items": {"type": "string"}}}}}}}

# https://prometheus-operator.dev/docs/api-reference/api/#monitoring.coreos.com/v1.PodMonitorSpec
POD_MONITOR = _resource("monitoring.coreos.com/v1", "PodMonitor", {
    "type": "object", "additionalProperties": False,
    "required": ["selector", "podMetricsEndpoints"], "properties": {
        "selector": _SELECTOR,
        "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "properties": {
                "port": {"type": "string"}, "path": {"type": "string"},
                "interval": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"}}}}}})

# https://prometheus-operator.dev/docs/api-reference/api/#monitoring.coreos.com/v1.PrometheusRuleSpec
_RULE = {"type": "object", "additionalProperties": False, "required": ["expr"],
         "properties": {
             "alert": {"type": "string"}, "record": {"type": "string"},
             "expr": {"type": "string"}, "for": {"type": "string"},
             "labels": {"type": "object", "additionalProperties": {"type": "string"}},
             "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}
PROMETHEUS_RULE = _resource("monitoring.coreos.com/v1", "PrometheusRule", {
    "type": "object", "additionalProperties": False, "properties": {
        "groups": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "rules"],
            "properties": {"name": {"type": "string"}, "interval": {"type": "string"},
                           "rules": {"type": "array", "items": _RULE}}}}}})

SCHEMAS = {(s["properties"]["apiVersion"]["const"], s["properties"]["kind"]["const"]): s
           for s in (RABBITMQ_CLUSTER, CNPG_CLUSTER, POD_MONITOR, PROMETHEUS_RULE)}
