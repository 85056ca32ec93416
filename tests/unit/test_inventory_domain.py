import pytest

from contracts.errors import Conflict, InvalidInput, NotFound
from services.inventory import domain


@pytest.fixture
def session(migrated_session):
    return migrated_session("inventory")


def product(session, sku="sku-1", stock=5, price=250):
    return domain.create_product(session, sku, "A thing", price, stock)


def test_duplicate_sku_conflicts(session):
    product(session)
    with pytest.raises(Conflict):
        product(session)


def test_paging_counts_everything(session):
    for i in range(5):
        product(session, sku=f"s{i}")
    items, total = domain.list_products(session.connection(), limit=2, offset=3)
    assert total == 5 and [p["sku"] for p in items] == ["s3", "s4"]


def test_restock_adds_and_refuses_overflow(session):
    p = product(session, stock=1)
    assert domain.restock(session, p["id"], 4)["stock"] == 5
    with pytest.raises(InvalidInput):
        domain.restock(session, p["id"], domain.MAX_STOCK)
    assert domain.get_product(session.connection(), p["id"])["stock"] == 5
    with pytest.raises(NotFound):
        domain.restock(session, 999, 1)


def test_reserve_is_all_or_nothing(session):
    a, b = product(session, "a", stock=5), product(session, "b", stock=1)
    r, created = domain.reserve(session, 1, [{"product_id": a["id"], "quantity": 2},
                                             {"product_id": b["id"], "quantity": 2}])
    assert created and r["status"] == "rejected" and r["short_product_ids"] == [b["id"]]
    assert domain.get_product(session.connection(), a["id"])["stock"] == 5
    assert domain.get_product(session.connection(), b["id"])["stock"] == 1


def test_reserve_is_idempotent_per_order(session):
    a = product(session, stock=5)
    lines = [{"product_id": a["id"], "quantity": 2}]
    first, created = domain.reserve(session, 7, lines)
    again, created_again = domain.reserve(session, 7, lines)
    assert first == again and first["status"] == "reserved"
    assert created and not created_again
    assert domain.get_product(session.connection(), a["id"])["stock"] == 3
    with pytest.raises(Conflict):
        domain.reserve(session, 7, [{"product_id": a["id"], "quantity": 1}])


def test_unknown_product_reserves_nothing(session):
    a = product(session)
    with pytest.raises(NotFound) as caught:
        domain.reserve(session, 1, [{"product_id": a["id"], "quantity": 1},
                                    {"product_id": 404, "quantity": 1}])
    assert caught.value.fields == {"product_ids": [404]}
    assert domain.get_product(session.connection(), a["id"])["stock"] == 5
    with pytest.raises(NotFound):
        domain.release(session, 1)


def test_release_gives_units_back_once(session):
    a = product(session, stock=5)
    domain.reserve(session, 1, [{"product_id": a["id"], "quantity": 4}])
    assert domain.release(session, 1)[0]["status"] == "released"
    assert domain.release(session, 1)[1] is False
    assert domain.get_product(session.connection(), a["id"])["stock"] == 5


def test_commit_then_release_returns_stock(session):
    a = product(session, stock=5)
    domain.reserve(session, 1, [{"product_id": a["id"], "quantity": 4}])
    assert domain.commit(session, 1)["status"] == "committed"
    assert domain.commit(session, 1)["status"] == "committed"
    assert domain.get_product(session.connection(), a["id"])["stock"] == 1
    domain.release(session, 1)
    assert domain.get_product(session.connection(), a["id"])["stock"] == 5
    with pytest.raises(Conflict):
        domain.commit(session, 1)


def test_a_rejected_reservation_cannot_be_committed(session):
    a = product(session, stock=1)
    domain.reserve(session, 1, [{"product_id": a["id"], "quantity": 2}])
    with pytest.raises(Conflict):
        domain.commit(session, 1)
    assert domain.release(session, 1)[0]["status"] == "rejected"
    assert domain.get_product(session.connection(), a["id"])["stock"] == 1
