"""Every saga path through the gateway, with all services in real containers."""
import eventlet
import pytest
import requests

from mesh.testing import free_port, wait_until

FAST = dict(EVENT_RETRY_DELAYS=[0.2, 0.4])


@pytest.fixture
def mesh(start_mesh):
    return start_mesh(**FAST)


def stock(mesh, product_id):
    return mesh("GET", f"/api/v1/products/{product_id}").json()["stock"]


def payment(mesh, order_id, rpc_client):
    return rpc_client.payments.get_payment(order_id=order_id)


def notifications(mesh, token):
    return mesh("GET", "/api/v1/notifications", token).json()


def race_for_five_units(mesh, orders=12):
    """`orders` customers at once for 5 units: exactly 5 confirmed, stock 0."""
    product = mesh.product(stock=5)
    customers = [mesh.customer() for _ in range(orders)]
    pool = eventlet.GreenPool(orders)
    placed = list(pool.imap(lambda token: (token, mesh.order(token, product["id"]).json()),
                            customers))
    final = [mesh.settled(token, order["id"])["status"] for token, order in placed]
    assert final.count("confirmed") == 5
    assert final.count("rejected") == orders - 5
    assert stock(mesh, product["id"]) == 0
    return customers


def test_confirmed_then_cancelled(mesh, rpc_client):
    customer = mesh.customer()
    product = mesh.product(stock=5, price_cents=1250)
    created = mesh.order(customer, product["id"], quantity=2)
    assert created.status_code == 202
    order = created.json()
    assert order["status"] == "pending" and order["reason"] is None
    assert order["items"] == [{"product_id": product["id"], "quantity": 2,
                               "unit_price_cents": 1250}]
    assert order["total_cents"] == 2500
    assert mesh.settled(customer, order["id"], timeout=2)["status"] == "confirmed"
    assert stock(mesh, product["id"]) == 3
    assert payment(mesh, order["id"], rpc_client)["status"] == "captured"

    cancel = mesh("POST", f"/api/v1/orders/{order['id']}/cancel", customer)
    assert cancel.status_code == 202 and cancel.json()["status"] == "cancelling"
    assert mesh.settled(customer, order["id"])["status"] == "cancelled"
    assert stock(mesh, product["id"]) == 5
    assert payment(mesh, order["id"], rpc_client)["status"] == "refunded"
    again = mesh("POST", f"/api/v1/orders/{order['id']}/cancel", customer)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "order_not_cancellable"
    eventlet.sleep(0.5)
    kinds = [n["kind"] for n in notifications(mesh, customer)["items"]]
    assert kinds == ["order_cancelled", "order_confirmed", "welcome"]


def test_declined_payment_releases_stock(mesh, rpc_client):
    customer = mesh.customer()
    product = mesh.product(stock=2)
    order = mesh.order(customer, product["id"], quantity=2, card="tok_declined").json()
    settled = mesh.settled(customer, order["id"])
    assert (settled["status"], settled["reason"]) == ("rejected", "payment_declined")
    eventlet.sleep(0.3)
    assert stock(mesh, product["id"]) == 2
    assert payment(mesh, order["id"], rpc_client)["status"] == "declined"


def test_insufficient_stock_takes_nothing(mesh):
    customer = mesh.customer()
    product = mesh.product(stock=1)
    order = mesh.order(customer, product["id"], quantity=2).json()
    settled = mesh.settled(customer, order["id"])
    assert (settled["status"], settled["reason"]) == ("rejected", "insufficient_stock")
    assert stock(mesh, product["id"]) == 1
    eventlet.sleep(0.3)
    assert notifications(mesh, customer)["items"][0]["kind"] == "order_rejected"


def test_order_errors(mesh):
    customer, other = mesh.customer(), mesh.customer()
    product = mesh.product()
    unknown = mesh.order(customer, 999999999)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_product"
    assert unknown.json()["error"]["fields"]["items"]
    bad = mesh("POST", "/api/v1/orders", customer, json={
        "items": [{"product_id": product["id"], "quantity": 1}] * 2,
        "payment": {"card_token": "visa"}})
    assert bad.status_code == 422
    assert set(bad.json()["error"]["fields"]) == {"items", "payment"}
    order = mesh.order(customer, product["id"]).json()
    assert mesh("GET", f"/api/v1/orders/{order['id']}", other).status_code == 404
    assert mesh("POST", f"/api/v1/orders/{order['id']}/cancel", other).status_code == 404
    admin = mesh("GET", f"/api/v1/orders/{order['id']}", mesh.admin_token())
    assert admin.status_code == 200
    assert mesh("GET", "/api/v1/orders", other).json()["total"] == 0
    mine = mesh("GET", "/api/v1/orders?limit=1", customer).json()
    assert mine["total"] == 1 and mine["items"][0]["id"] == order["id"]


def test_idempotency_key(mesh):
    customer, other = mesh.customer(), mesh.customer()
    product = mesh.product(stock=10)
    key = {"Idempotency-Key": "order-attempt-1"}
    first = mesh.order(customer, product["id"], headers=dict(key)).json()
    again = mesh.order(customer, product["id"], headers=dict(key))
    assert again.status_code == 202 and again.json()["id"] == first["id"]
    changed = mesh.order(customer, product["id"], quantity=2, headers=dict(key))
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    theirs = mesh.order(other, product["id"], headers=dict(key)).json()
    assert theirs["id"] != first["id"]
    mesh.settled(customer, first["id"])
    mesh.settled(other, theirs["id"])
    assert stock(mesh, product["id"]) == 8
    assert mesh("GET", "/api/v1/orders", customer).json()["total"] == 1
    too_long = mesh.order(customer, product["id"], headers={"Idempotency-Key": "k" * 129})
    assert too_long.status_code == 422


def test_an_order_request_delivered_twice_makes_one_order(mesh, rpc_client, deliver_twice):
    """Without the client's Idempotency-Key, the request's own id keys the order:
    the broker's second delivery (the service died before acknowledging the
    first) answers with the first's order."""
    product = mesh.product(stock=5)
    user_id = 10**9 + 7  # nobody else's orders
    answers = deliver_twice("orders.create_order", user_id=user_id, idempotency_key=None,
                            items=[{"product_id": product["id"], "quantity": 1}],
                            payment={"card_token": "tok_visa"})
    first, again = (answer["result"] for answer in answers)
    assert again["id"] == first["id"]
    assert rpc_client.orders.list_orders(user_id=user_id, limit=10, offset=0)["total"] == 1
    wait_until(lambda: rpc_client.orders.get_order(order_id=first["id"], user_id=user_id)
               ["status"] == "confirmed", what="the order confirmed")
    assert stock(mesh, product["id"]) == 4


def test_twelve_orders_race_for_five_units(mesh):
    race_for_five_units(mesh)


def test_a_stuck_saga_times_out_and_is_compensated(start_mesh):
    # no payments service: the saga stops after reserving stock
    ops = free_port()
    mesh = start_mesh(["accounts", "inventory", "orders", "notifications", "gateway"],
                      SAGA_TIMEOUT_SECONDS=1, OPS_PORTS={"orders": ops}, **FAST)
    customer = mesh.customer()
    product = mesh.product(stock=3)
    order = mesh.order(customer, product["id"], quantity=2).json()
    settled = mesh.settled(customer, order["id"], timeout=6)
    assert (settled["status"], settled["reason"]) == ("rejected", "timeout")
    deadline = eventlet.Timeout(5)
    try:
        while stock(mesh, product["id"]) != 3:
            eventlet.sleep(0.1)
    finally:
        deadline.cancel()
    # what the "saga timeouts" alert watches
    metrics = requests.get(f"http://127.0.0.1:{ops}/metrics", timeout=5).text
    assert 'mesh_saga_timeouts_total{service="orders"} 1.0' in metrics


def test_every_event_delivered_twice_changes_nothing(mesh, mesh_config, rpc_client):
    from kombu import Connection, Exchange, Queue

    import contracts

    exchanges = [Exchange(f"{name}.events", type="topic", durable=True)
                 for name, contract in contracts.CONTRACTS.items() if contract.events]
    with Connection(mesh_config["AMQP_URI"]) as connection:
        channel = connection.channel()
        spy = Queue(f"spy-{id(mesh)}", auto_delete=True, channel=channel)
        spy.declare()
        for exchange in exchanges:
            exchange(channel).declare()
            spy.bind_to(exchange=exchange.name, routing_key="#")

        customer = mesh.customer()
        product = mesh.product(stock=3)
        kept = mesh.order(customer, product["id"], quantity=1).json()
        cancelled = mesh.order(customer, product["id"], quantity=1).json()
        declined = mesh.order(customer, product["id"], quantity=1, card="tok_declined").json()
        short = mesh.order(customer, product["id"], quantity=5).json()
        mesh.settled(customer, cancelled["id"])
        mesh("POST", f"/api/v1/orders/{cancelled['id']}/cancel", customer)
        orders = [kept, cancelled, declined, short]
        for order in orders:
            mesh.settled(customer, order["id"])
        # and what accounts announces of a user's lifecycle
        admin, leaving = mesh.admin_token(), mesh.customer()
        leaving_id = mesh("GET", "/api/v1/me", leaving).json()["id"]
        assert mesh("POST", "/api/v1/me/password", leaving, json={
            "current_password": "correct horse", "new_password": "battery staple"}
        ).status_code == 204
        for method, path in (("POST", "/disable"), ("POST", "/enable"), ("DELETE", "")):
            assert mesh(method, f"/api/v1/users/{leaving_id}{path}", admin).ok
        eventlet.sleep(1)

        def state():
            return ([mesh.settled(customer, o["id"])["status"] for o in orders],
                    stock(mesh, product["id"]),
                    [rpc_client.payments.get_payment(order_id=o["id"])["status"]
                     for o in orders[:3]],
                    notifications(mesh, customer)["total"])

        before = state()
        assert before == (["confirmed", "cancelled", "rejected", "rejected"], 2,
                          ["captured", "refunded", "declined"], 6)
        seen = []
        while (message := spy.get(no_ack=True)) is not None:
            seen.append(message)
        types = {m.delivery_info["routing_key"] for m in seen}
        declared = {t for c in contracts.CONTRACTS.values() for t in c.events}
        assert types == declared  # the saga above sends every kind of event
        producer = connection.Producer(channel=connection.channel())
        for message in seen:  # deliver each one a second time
            producer.publish(message.body, exchange=message.delivery_info["exchange"],
                             routing_key=message.delivery_info["routing_key"],
                             headers=message.headers, content_type=message.content_type,
                             content_encoding=message.content_encoding)
        eventlet.sleep(2)
        assert state() == before


def test_on_postgresql_with_two_instances_of_each_saga_service(start_service, mesh_config,
                                                               postgres_databases):
    """Relays share each outbox with FOR UPDATE SKIP LOCKED; handlers share queues."""
    from mesh.core.services import import_service
    from mesh.testing import free_port, wait_until
    from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Client

    port = free_port()
    overrides = dict(FAST, GATEWAY_PORT=port, MESH_ADMIN_EMAIL=ADMIN_EMAIL,
                     MESH_ADMIN_PASSWORD=ADMIN_PASSWORD)
    for name in mesh_config["SERVICES"]:
        if name != "gateway":
            overrides[f"DATABASE_URL_{name.upper()}"] = postgres_databases(name)
    for name, path in mesh_config["SERVICES"].items():
        copies = 2 if name in ("inventory", "orders", "payments") else 1
        for _ in range(copies):
            start_service(import_service(path), **overrides)
    mesh = Client(f"http://127.0.0.1:{port}", {**mesh_config, **overrides})
    customers = race_for_five_units(mesh)
    eventlet.sleep(1)
    # one notification per outcome, though two instances of each service ran
    assert [notifications(mesh, token)["total"] for token in customers] == [2] * 12
    # the dearest order a contract allows: its total needs more than 32 bits
    from contracts.base import MAX_PRICE_CENTS, MAX_QUANTITY
    dear = mesh.product(stock=MAX_QUANTITY, price_cents=MAX_PRICE_CENTS)
    token = mesh.customer()
    order = mesh.order(token, dear["id"], quantity=MAX_QUANTITY)
    assert order.status_code == 202, order.text
    settled = mesh.settled(token, order.json()["id"])
    assert settled["status"] == "confirmed"
    assert settled["total_cents"] == MAX_PRICE_CENTS * MAX_QUANTITY > 2**31
