"""What operators get from a running mesh: logs, metrics, `mesh status`, `mesh call`, traces."""
import http.server
import json
import threading
import time
import uuid

import pytest
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from mesh.testing import wait_until
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, OPS_SERVICES
from tests.unit.test_deploy import dashboard_metrics

SAGA_SERVICES = {"gateway", "accounts", "inventory", "orders", "payments", "notifications"}


def place_order(mesh, headers=None):
    """A confirmed order for a new customer; returns (order, customer token)."""
    admin = mesh.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    product = mesh.http("POST", "/api/v1/products", admin, json={
        "sku": f"ops-{uuid.uuid4().hex[:8]}", "name": "Ops", "price_cents": 250,
        "stock": 10}).json()
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    mesh.http("POST", "/api/v1/auth/register",
              json={"email": email, "password": "correct horse", "name": "Ops"})
    customer = mesh.http.token(email, "correct horse")
    order = mesh.http("POST", "/api/v1/orders", customer, headers=headers or {}, json={
        "items": [{"product_id": product["id"], "quantity": 1}],
        "payment": {"card_token": "tok_visa"}})
    assert order.status_code == 202, order.text
    order = order.json()
    wait_until(lambda: mesh.http("GET", f"/api/v1/orders/{order['id']}", customer)
               .json()["status"] == "confirmed", 30, "confirmation")
    wait_until(lambda: any(n["kind"] == "order_confirmed" for n in mesh.http(
        "GET", "/api/v1/notifications", customer).json()["items"]), 30, "notification")
    return order, customer


def samples(text):
    """`{(name, frozenset(labels)): value}` of a Prometheus text page."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(page, name, **labels):
    return sum(v for (n, found), v in page.items()
               if n == name and set(labels.items()) <= found)


def test_one_request_id_finds_the_whole_story_in_every_service_log(start_mesh):
    mesh = start_mesh(MESH_WORKER_LOG_LEVEL="INFO")  # a line for every worker
    mesh.wait_for("ready: the gateway is serving on", timeout=30)
    request_id = f"story-{uuid.uuid4().hex[:12]}"
    place_order(mesh, headers={"X-Request-ID": request_id})

    def story():
        found = [r for r in mesh.records() if r.get("request_id") == request_id]
        return found if {r["service"] for r in found} >= SAGA_SERVICES else None

    lines = wait_until(story, 30, "log lines from every service")
    workers = [r for r in lines if r["logger"] == "mesh.worker"]
    assert {(r["service"], r["entrypoint"]) for r in workers} >= {
        ("gateway", "api"), ("orders", "create_order"), ("inventory", "get_prices"),
        ("inventory", "on_order_created"), ("orders", "on_stock_reserved"),
        ("payments", "on_payment_requested"), ("orders", "on_payment_captured"),
        ("notifications", "on_order_confirmed")}
    for record in workers:
        assert record["outcome"] == "ok" and record["duration_ms"] >= 0
        assert record["level"] == "INFO" and record["timestamp"].endswith("Z")
    (access,) = [r for r in lines if r["logger"] == "mesh.http.access"]
    assert (access["status"], access["route"]) == (202, "/api/v1/orders")


def test_by_default_the_logs_show_answers_only_as_access_lines(mesh):
    request_id = f"quiet-{uuid.uuid4().hex[:12]}"
    assert mesh.http("GET", "/api/v1/products/987654321",
                     headers={"X-Request-ID": request_id}).status_code == 404
    def lines():
        return [r for r in mesh.records() if r.get("request_id") == request_id]

    wait_until(lines, 10, "the access line")
    time.sleep(1)  # inventory's line, were there one, would be written by now
    found = lines()
    assert [r["logger"] for r in found] == ["mesh.http.access"], found
    assert found[0]["status"] == 404


def test_metrics_move_with_calls(mesh):
    admin = mesh.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    before_gateway = samples(mesh.ops("gateway").text)
    before = samples(mesh.ops("inventory").text)
    created = mesh.http("POST", "/api/v1/products", admin, json={
        "sku": f"m-{uuid.uuid4().hex[:8]}", "name": "M", "price_cents": 1})
    assert created.status_code == 201
    assert mesh.http("GET", "/api/v1/products/987654321").status_code == 404
    after_gateway = samples(mesh.ops("gateway").text)
    after = samples(mesh.ops("inventory").text)

    def moved(before, after, name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "mesh_worker_calls_total"
    assert moved(before, after, calls, entrypoint="create_product", outcome="ok") == 1
    assert moved(before, after, calls, entrypoint="get_product",
                 outcome="expected_error") == 1
    assert moved(before, after, "mesh_worker_duration_seconds_count",
                 entrypoint="create_product") == 1
    route = "/api/v1/products/<int:product_id>"
    assert moved(before_gateway, after_gateway, "mesh_http_requests_total", route=route,
                 method="GET", status="404") == 1
    assert moved(before_gateway, after_gateway, "mesh_http_request_duration_seconds_count",
                 route="/api/v1/products", method="POST") == 1
    assert value(after_gateway, "mesh_circuit_state", target="inventory") == 0
    assert value(after, "mesh_rpc_consumers", service="inventory") == 1
    assert mesh.ops("inventory", "/health").json() == {
        "status": "ok", "service": "inventory",
        "checks": {"event_loop": "ok", "consumers": "ok"}}
    assert mesh.ops("inventory", "/ready").json() == {
        "status": "ready", "checks": {"broker": "ok", "database": "ok"}}
    # the gateway's metrics are on its ops port only, never on the public one
    assert mesh.http("GET", "/metrics").status_code == 404
    # its readiness for an orchestrator is there too, out of the rate limits' way
    ready = mesh.ops("gateway", "/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["broker"] == "ok"


def test_the_dashboard_queries_only_metrics_the_mesh_exports(mesh):
    place_order(mesh)  # so that every family has been created
    exported = set()
    pages = [mesh.ops(s).text for s in OPS_SERVICES + ("gateway",)]
    for page in pages:
        for family in text_string_to_metric_families(page):
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
            exported |= {family.name + s for s in suffixes.get(family.type, [""])}
    missing = dashboard_metrics() - exported
    assert not missing, f"the dashboard queries metrics nothing exports: {sorted(missing)}"


def test_mesh_call_answers_like_an_internal_caller(mesh):
    admin = mesh.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    product = mesh.http("POST", "/api/v1/products", admin, json={
        "sku": f"call-{uuid.uuid4().hex[:8]}", "name": "Call", "price_cents": 3}).json()

    found = mesh.mesh("call", "inventory.get_product", json.dumps({"product_id": product["id"]}))
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == product

    missing = mesh.mesh("call", "inventory.get_product", '{"product_id": 987654321}')
    assert missing.returncode == 1
    assert missing.stderr.startswith("NotFound: product 987654321 not found")

    invalid = mesh.mesh("call", "inventory.get_product", '{"product_id": "one"}')
    assert invalid.returncode == 1 and invalid.stderr.startswith("InvalidInput:")
    assert json.loads(invalid.stderr.split("\n", 1)[1]) == {
        "product_id": ["Not a valid integer."]}

    assert mesh.mesh("call", "inventory.get_product", "{not json").returncode == 2
    assert mesh.mesh("call", "inventory.get_product", "[1]").returncode == 2
    unknown = mesh.mesh("call", "billing.charge", "{}")
    assert unknown.returncode == 3 and "no running service 'billing'" in unknown.stderr


def test_mesh_status_reports_stopped_services_and_dead_letters(start_mesh):
    mesh = start_mesh("--only", "accounts,inventory")
    mesh.wait_for("inventory started", timeout=30)
    mesh.wait_for("accounts started", timeout=30)
    queue = "evt-orders-order_created--inventory.on_order_created"
    with Connection(mesh.env["AMQP_URI"]) as connection:  # a message no handler can read
        connection.default_channel.basic_publish(
            connection.default_channel.prepare_message(b"\xff not json"),
            exchange="", routing_key=queue)

    def parked():
        result = mesh.mesh("status", "--json")
        status = json.loads(result.stdout)
        return (result, status) if status["services"]["inventory"]["dead_letters"][queue] \
            else None

    result, status = wait_until(parked, 30, "the dead letter")
    assert result.returncode == 1 and status["ok"] is False and status["broker"] == "ok"
    inventory, orders = status["services"]["inventory"], status["services"]["orders"]
    assert inventory["ready"] and inventory["instances"] == 1
    assert inventory["dead_letters"][queue] == 1
    assert inventory["outbox"] == {"backlog": 0, "oldest_age_seconds": 0.0}
    assert not orders["ready"] and "no running instance" in orders["problems"]
    assert status["services"]["gateway"]["instances"] == 0

    table = mesh.mesh("status")
    assert table.returncode == 1
    assert f"{queue}.dlq" in table.stdout
    assert any(line.startswith("orders") and "no running instance" in line
               for line in table.stdout.splitlines())
    page = samples(mesh.ops("inventory").text)
    assert value(page, "mesh_dlq_messages", queue=queue) == 1


class Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint on loopback that keeps the spans it is sent."""

    spans = []

    def do_POST(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import \
            ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        for resource in request.resource_spans:
            service = next(a.value.string_value for a in resource.resource.attributes
                           if a.key == "service.name")
            for scope in resource.scope_spans:
                self.spans.extend((service, span) for span in scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    Collector.spans = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Collector.spans
    server.shutdown()


def test_traces_follow_a_request_through_rpc_and_events(start_mesh, collector):
    endpoint, spans = collector
    mesh = start_mesh(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY="200")
    mesh.wait_for("ready: the gateway is serving on", timeout=30)
    trace_id = uuid.uuid4().hex
    place_order(mesh, headers={"traceparent": f"00-{trace_id}-{'ab' * 8}-01"})

    # spans arrive in each process's batches: wait for those looked at below too,
    # not only for one from every service (inventory's get_prices came first)
    wanted = {("gateway", "gateway.api"), ("orders", "orders.create_order"),
              ("inventory", "inventory.get_prices"),
              ("inventory", "inventory.on_order_created")}

    def traced():
        found = {(service, span.name): span for service, span in list(spans)
                 if span.trace_id.hex() == trace_id}
        return found if {s for s, _ in found} >= SAGA_SERVICES and set(found) >= wanted \
            else None

    found = wait_until(traced, 30, "spans from every service")
    api = found[("gateway", "gateway.api")]
    assert api.parent_span_id.hex() == "ab" * 8  # the client's trace continues
    create = found[("orders", "orders.create_order")]
    assert create.parent_span_id == api.span_id
    assert found[("inventory", "inventory.get_prices")].parent_span_id == create.span_id
    # an event's handler is the child of the worker that recorded the event
    assert found[("inventory", "inventory.on_order_created")].parent_span_id == \
        create.span_id
