"""The inventory service in a real container, on SQLite and on the real PostgreSQL."""
import uuid

import eventlet
import pytest

from contracts.errors import Conflict, InvalidInput, NotFound
from services.inventory.service import InventoryService


@pytest.fixture(params=["sqlite", "postgresql"])
def inventory(request, start_service, rpc_client):
    overrides = {}
    if request.param == "postgresql":
        overrides["DATABASE_URL_INVENTORY"] = request.getfixturevalue("postgres_url")
    start_service(InventoryService, **overrides)
    return rpc_client.inventory


def sku():
    return f"sku-{uuid.uuid4().hex[:12]}"


def test_create_get_list_restock(inventory):
    product = inventory.create_product(sku=sku(), name="Widget", price_cents=1999)
    assert product["stock"] == 0 and product["created_at"].endswith("Z")
    assert inventory.get_product(product_id=product["id"]) == product
    assert inventory.restock(product_id=product["id"], quantity=3)["stock"] == 3
    page = inventory.list_products(limit=100, offset=0)
    assert page["total"] >= 1 and page["limit"] == 100
    assert product["id"] in [p["id"] for p in page["items"]]


def test_typed_errors(inventory):
    code = sku()
    inventory.create_product(sku=code, name="Widget", price_cents=1)
    with pytest.raises(Conflict):
        inventory.create_product(sku=code, name="Again", price_cents=1)
    with pytest.raises(NotFound):
        inventory.get_product(product_id=10**9)
    with pytest.raises(InvalidInput) as caught:
        inventory.create_product(sku="no spaces", name="", price_cents=0, stock=-1)
    assert set(caught.value.fields) == {"sku", "name", "price_cents", "stock"}


def test_reservation_lifecycle(inventory):
    product = inventory.create_product(sku=sku(), name="Widget", price_cents=5, stock=4)
    order_id = uuid.uuid4().int % 2**31
    lines = [{"product_id": product["id"], "quantity": 3}]
    reservation = inventory.reserve_stock(order_id=order_id, lines=lines)
    assert reservation["status"] == "reserved"
    assert inventory.reserve_stock(order_id=order_id, lines=lines) == reservation
    assert inventory.get_product(product_id=product["id"])["stock"] == 1
    assert inventory.commit_stock(order_id=order_id)["status"] == "committed"
    assert inventory.release_stock(order_id=order_id)["status"] == "released"
    assert inventory.release_stock(order_id=order_id)["status"] == "released"
    assert inventory.get_product(product_id=product["id"])["stock"] == 4


def test_twenty_reservations_race_for_five_units(inventory):
    product = inventory.create_product(sku=sku(), name="Scarce", price_cents=5, stock=5)
    base = uuid.uuid4().int % 2**30
    calls = [inventory.reserve_stock.call_async(
        order_id=base + i, lines=[{"product_id": product["id"], "quantity": 1}])
        for i in range(20)]
    statuses = [call.result()["status"] for call in calls]
    assert statuses.count("reserved") == 5
    assert statuses.count("rejected") == 15
    assert inventory.get_product(product_id=product["id"])["stock"] == 0


def test_same_order_racing_itself_reserves_once(inventory):
    product = inventory.create_product(sku=sku(), name="Dup", price_cents=5, stock=10)
    order_id = uuid.uuid4().int % 2**31
    lines = [{"product_id": product["id"], "quantity": 2}]
    calls = [inventory.reserve_stock.call_async(order_id=order_id, lines=lines)
             for _ in range(8)]
    assert {call.result()["status"] for call in calls} == {"reserved"}
    assert inventory.get_product(product_id=product["id"])["stock"] == 8


def test_postgres_driver_is_cooperative(postgres_url):
    # eventlet's monkey patch installs psycopg2's wait callback: queries yield
    import psycopg2.extensions
    assert psycopg2.extensions.get_wait_callback() is not None


def test_a_restock_delivered_twice_adds_once(inventory, deliver_twice):
    """The broker redelivers a request whose service died before acking it."""
    product = inventory.create_product(sku=sku(), name="Twice", price_cents=5, stock=1)
    answers = deliver_twice("inventory.restock", product_id=product["id"], quantity=4)
    assert [answer["result"]["stock"] for answer in answers] == [5, 5]
    assert inventory.get_product(product_id=product["id"])["stock"] == 5
