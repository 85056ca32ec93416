"""An operator follows one request: `mesh trace`, `mesh dlq groups`, a group replayed,
on SQLite and on PostgreSQL."""
import json
import pathlib
import sqlite3
import uuid

import psycopg2
import pytest

from mesh.testing import temporary_postgres_databases, wait_until
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, OPS_SERVICES, RunningMesh
from tests.e2e.test_operations import place_order, samples, value

# each handler's step, in the order the saga takes them
SAGA = [("orders", "rpc", "create_order"), ("orders", "event-out", "order_created"),
        ("inventory", "event-in", "on_order_created"),
        ("inventory", "event-out", "stock_reserved"),
        ("orders", "event-in", "on_stock_reserved"),
        ("orders", "event-out", "payment_requested"),
        ("payments", "event-in", "on_payment_requested"),
        ("payments", "event-out", "payment_captured"),
        ("orders", "event-in", "on_payment_captured"),
        ("orders", "event-out", "order_confirmed"),
        ("notifications", "event-in", "on_order_confirmed")]
PAYMENTS_QUEUE = "evt-orders-payment_requested--payments.on_payment_requested"


# what payments says once its table is gone, on each backend
TABLE_GONE = {"sqlite": ("OperationalError", "no such table: payments"),
              "postgresql": ("ProgrammingError", 'relation "payments" does not exist')}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def traced(request, mesh_env):
    """A mesh on SQLite, then one on PostgreSQL: each service's own database."""
    with temporary_postgres_databases() as make:
        urls = {f"DATABASE_URL_{name.upper()}": make(name) for name in OPS_SERVICES} \
            if request.param == "postgresql" else {}
        # quick retries, and no saga expiring while a test keeps its payment parked
        running = RunningMesh(mesh_env(EVENT_RETRY_DELAYS="[0.1, 0.2]",
                                       SAGA_TIMEOUT_SECONDS="600",
                                       MESH_WORKER_LOG_LEVEL="INFO", **urls))
        running.backend = request.param
        try:
            running.wait_for("ready: the gateway is serving on", timeout=30)
            yield running
        finally:
            running.kill()


def rename_table(mesh, old, new):
    """Rename a table of payments' database (the fault, and its fix)."""
    statement = f"ALTER TABLE {old} RENAME TO {new}"
    if mesh.backend == "sqlite":
        with sqlite3.connect(pathlib.Path(mesh.env["MESH_DATA_DIR"]) / "payments.sqlite") \
                as db:
            db.execute(statement)
    else:
        with psycopg2.connect(mesh.env["DATABASE_URL_PAYMENTS"]) as db, \
                db.cursor() as cursor:
            cursor.execute(statement)


def trace(mesh, *args):
    result = mesh.mesh("trace", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def positions(steps):
    """Where each (service, kind, name) of SAGA first appears in `steps`."""
    keys = [(s["service"], s["kind"], s["name"]) for s in steps]
    return [keys.index(step) if step in keys else None for step in SAGA]


def test_a_settled_order_is_told_in_causal_order_by_request_and_by_order(traced):
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    order, customer = place_order(traced, headers={"X-Request-ID": request_id})

    steps = wait_until(lambda: (s := trace(traced, request_id)) and
                       "notifications" in {x["service"] for x in s} and s, 30,
                       "the notification's step")
    found = positions(steps)
    assert None not in found, [(s["service"], s["kind"], s["name"]) for s in steps]
    assert found == sorted(found), "the steps are not in causal order"
    for step in steps:
        assert set(step) >= {"service", "kind", "name", "outcome", "at"}
        assert step["at"].endswith("Z") and step["after_seconds"] >= 0
    assert all(s["outcome"] == "sent" for s in steps if s["kind"] == "event-out")
    (saga,) = [s for s in steps if s["kind"] == "saga"]
    assert (saga["name"], saga["outcome"]) == (f"order {order['id']}", "confirmed")

    text = traced.mesh("trace", request_id)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[-1] == (
        f"now: settled: order {order['id']} confirmed (stock reserved, payment captured)")
    by_order = traced.mesh("trace", "--order", str(order["id"]))
    assert by_order.stdout.splitlines()[0] == f"request {request_id}"

    # a later request on the same order is part of its story, and says whose it is
    cancel_id = f"cancel-{uuid.uuid4().hex[:12]}"
    assert traced.http("POST", f"/api/v1/orders/{order['id']}/cancel", customer,
                       headers={"X-Request-ID": cancel_id}).status_code == 202
    text = wait_until(lambda: (t := traced.mesh("trace", request_id).stdout)
                      .endswith("cancelled (stock released, payment refunded)\n") and t, 30,
                      "the cancellation in the order's story")
    cancelling = [line for line in text.splitlines() if "event-out   order_cancelling" in line]
    assert len(cancelling) == 1 and f"; request {cancel_id})" in cancelling[0]
    assert "rpc         cancel_order" in text


def test_an_unknown_request_or_order_is_said_and_exits_1(traced):
    unknown = traced.mesh("trace", "no-such-request")
    assert unknown.returncode == 1 and "no service, dead letter or log line knows " \
        "request 'no-such-request'" in unknown.stderr and not unknown.stdout
    no_order = traced.mesh("trace", "--order", "987654321")
    assert no_order.returncode == 1 and "no service knows order_id 987654321" in \
        no_order.stderr
    both = traced.mesh("trace", "abc", "--order", "1")
    assert both.returncode == 2 and "one of them" in both.stderr


def test_a_stuck_order_is_found_grouped_by_cause_replayed_and_settled(traced, tmp_path):
    admin = traced.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    product = traced.http("POST", "/api/v1/products", admin, json={
        "sku": f"stuck-{uuid.uuid4().hex[:8]}", "name": "Stuck", "price_cents": 300,
        "stock": 5}).json()
    error_type, said = TABLE_GONE[traced.backend]
    # the fault: payments' table is gone, so every payment request fails
    rename_table(traced, "payments", "payments_away")
    try:
        request_id = f"stuck-{uuid.uuid4().hex[:12]}"
        order = traced.http("POST", "/api/v1/orders", admin,
                            headers={"X-Request-ID": request_id}, json={
                                "items": [{"product_id": product["id"], "quantity": 1}],
                                "payment": {"card_token": "tok_visa"}}).json()

        def parked():
            steps = trace(traced, request_id)
            return steps if steps[-1]["kind"] in ("dead-letter",) else None

        steps = wait_until(parked, 30, "the payment's dead letter")
        last = steps[-1]
        assert (last["service"], last["name"]) == ("payments", "on_payment_requested")
        assert error_type in last["detail"] and said in last["detail"]
        text = traced.mesh("trace", request_id).stdout.splitlines()
        assert text[-1].startswith("now: dead-lettered: payments.on_payment_requested gave up")

        # the logs add the retries before it
        log = tmp_path / "mesh.log"
        log.write_text("\n".join(traced.lines) + "\n")
        logged = trace(traced, request_id, "--logs", str(log))
        retries = [s for s in logged if s["kind"] == "retry"]
        assert [s["outcome"] for s in retries] == [
            "attempt 1 failed, again in 0.1 s", "attempt 2 failed, again in 0.2 s"]
        assert logged[-1]["kind"] == "dead-letter"

        groups = json.loads(traced.mesh("dlq", "groups", "--json").stdout)
        (group,) = [g for g in groups if g["queue"] == PAYMENTS_QUEUE]
        assert group["count"] == 1 and group["request_ids"] == [request_id]
        assert group["error_type"] == error_type
        assert group["fingerprint"] in last["detail"]
        page = samples(traced.ops("payments").text)
        assert value(page, "mesh_dead_letters_total", queue=PAYMENTS_QUEUE,
                     fingerprint=group["fingerprint"],
                     error_type=error_type) == 1
        table = traced.mesh("dlq", "groups")
        assert group["fingerprint"] in table.stdout and said in table.stdout
        listed = traced.mesh("dlq", "list", "--group", group["fingerprint"])
        (line,) = listed.stdout.splitlines()
        assert f"request={request_id}" in line and f"group={group['fingerprint']}" in line
    finally:
        rename_table(traced, "payments_away", "payments")

    replayed = traced.mesh("dlq", "replay", "--group", group["fingerprint"])
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == f"replayed 1 message(s) into {PAYMENTS_QUEUE}"
    wait_until(lambda: traced.http("GET", f"/api/v1/orders/{order['id']}", admin)
               .json()["status"] == "confirmed", 30, "the order confirmed after the replay")
    settled = wait_until(
        lambda: (s := traced.mesh("trace", request_id).stdout.splitlines())[-1].startswith(
            "now: settled") and s, 30, "the trace settled")
    assert settled[-1] == (f"now: settled: order {order['id']} confirmed "
                           "(stock reserved, payment captured)")
    assert not [g for g in json.loads(traced.mesh("dlq", "groups", "--json").stdout)
                if g["fingerprint"] == group["fingerprint"]]
    again = traced.mesh("dlq", "replay", "--group", group["fingerprint"])
    assert again.returncode == 1 and "no dead letters in group" in again.stderr


def test_a_keyed_call_that_records_no_event_is_traced_from_its_request_key(traced):
    admin = traced.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    product = traced.http("POST", "/api/v1/products", admin, json={
        "sku": f"keyed-{uuid.uuid4().hex[:8]}", "name": "Keyed", "price_cents": 100,
        "stock": 1}).json()
    request_id = f"restock-{uuid.uuid4().hex[:12]}"
    assert traced.http("POST", f"/api/v1/products/{product['id']}/restock", admin,
                       headers={"X-Request-ID": request_id},
                       json={"quantity": 2}).status_code == 200
    (step,) = trace(traced, request_id)
    assert (step["service"], step["kind"], step["name"], step["outcome"]) == (
        "inventory", "rpc", "restock", "applied")
    assert traced.mesh("trace", request_id).stdout.splitlines()[-1] == \
        "now: settled: every event it caused was sent and handled"
