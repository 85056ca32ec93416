"""The order saga's state machine on a real SQLite file, with a recording outbox."""
import datetime as dt

import pytest
from sqlalchemy import select

from contracts.errors import NotFound
from contracts.orders import IdempotencyKeyReused, NotCancellable
from mesh.data.db import utcnow
from mesh.testing import RecordingOutbox
from services.orders import domain


@pytest.fixture
def session(migrated_session):
    return migrated_session("orders")


@pytest.fixture
def outbox():
    return RecordingOutbox("orders")


ITEMS = [{"product_id": 7, "quantity": 2}]


def place(session, outbox, key=None, items=ITEMS, card="tok_visa"):
    digest = domain.request_hash(items, {"card_token": card})
    order = domain.create(session, outbox, 1, items, card, {7: 250}, key, digest)
    session.commit()
    return order["id"]


def status(session, order_id):
    order = domain.get(session.connection(), order_id)
    return order["status"], order["reason"]


def test_created_pending_at_fixed_prices(session, outbox):
    order_id = place(session, outbox)
    order = domain.get(session.connection(), order_id)
    assert (order["status"], order["total_cents"]) == ("pending", 500)
    assert order["items"] == [{"product_id": 7, "quantity": 2, "unit_price_cents": 250}]
    assert outbox.events == [("order_created", {
        "order_id": order["id"], "user_id": 1, "total_cents": 500, "lines": ITEMS})]


def test_happy_path_and_duplicates_do_nothing(session, outbox):
    oid = place(session, outbox)
    for _ in range(2):
        domain.on_stock_reserved(session, outbox, oid)
        domain.on_payment_captured(session, outbox, oid)
    assert status(session, oid) == ("confirmed", None)
    assert outbox.types() == ["order_created", "payment_requested", "order_confirmed"]


@pytest.mark.parametrize("step,reason", [
    (domain.on_stock_rejected, "insufficient_stock"),
    (domain.on_payment_declined, "payment_declined"),
])
def test_rejections(session, outbox, step, reason):
    oid = place(session, outbox)
    step(session, outbox, oid)
    step(session, outbox, oid)
    assert status(session, oid) == ("rejected", reason)
    assert outbox.types().count("order_rejected") == 1


def test_cancel_needs_confirmed_and_waits_for_both_halves(session, outbox):
    oid = place(session, outbox)
    with pytest.raises(NotCancellable):
        domain.cancel(session, outbox, oid)
    domain.on_stock_reserved(session, outbox, oid)
    domain.on_payment_captured(session, outbox, oid)
    with pytest.raises(NotFound):
        domain.cancel(session, outbox, oid, owner_id=2)
    domain.cancel(session, outbox, oid, owner_id=1)
    domain.on_stock_released(session, outbox, oid)
    assert status(session, oid) == ("cancelling", None)
    domain.on_payment_refunded(session, outbox, oid)
    domain.on_payment_refunded(session, outbox, oid)
    assert status(session, oid) == ("cancelled", None)
    assert outbox.types()[-2:] == ["order_cancelling", "order_cancelled"]


def test_timeout_rejects_and_late_replies_are_compensated(session, outbox):
    oid = place(session, outbox)
    assert domain.expire(session, outbox, utcnow() - dt.timedelta(seconds=60)) == []
    assert domain.expire(session, outbox, utcnow() + dt.timedelta(seconds=1)) == [oid]
    assert status(session, oid) == ("rejected", "timeout")
    outbox.events.clear()
    domain.on_stock_reserved(session, outbox, oid)  # late: release it again
    domain.on_payment_captured(session, outbox, oid)  # late: refund it
    assert outbox.types() == ["order_rejected", "order_rejected"]
    assert status(session, oid) == ("rejected", "timeout")


def test_idempotency_keys(session, outbox):
    oid = place(session, outbox, key="k")
    digest = domain.request_hash(ITEMS, {"card_token": "tok_visa"})
    assert domain.find_by_key(session.connection(), 1, "k", digest)["id"] == oid
    assert domain.find_by_key(session.connection(), 2, "k", digest) is None
    with pytest.raises(IdempotencyKeyReused):
        domain.find_by_key(session.connection(), 1, "k", domain.request_hash(ITEMS, {"card_token": "tok_x"}))
    # a racing request with the same key gets the winner's order
    assert place(session, outbox, key="k") == oid


def test_pages_are_newest_first(session, outbox):
    ids = [place(session, outbox) for _ in range(3)]
    items, total = domain.page(session.connection(), 1, limit=2, offset=0)
    assert total == 3 and [o["id"] for o in items] == ids[::-1][:2]


def test_stock_reserved_asks_for_the_payment(migrated_session):
    # docs "Testing a service": a saga step, on a migrated database
    session, outbox = migrated_session("orders"), RecordingOutbox("orders")
    order = domain.create(session, outbox, 1, [{"product_id": 7, "quantity": 2}],
                          "tok_visa", {7: 250})
    domain.on_stock_reserved(session, outbox, order["id"])
    assert outbox.events[-1] == ("payment_requested", {
        "order_id": order["id"], "user_id": 1, "amount_cents": 500,
        "card_token": "tok_visa"})


def card_token(session, order_id):
    return session.connection().scalar(
        select(domain.ORDERS.c.card_token).where(domain.ORDERS.c.id == order_id))


def test_the_card_token_is_kept_only_until_the_payment_is_settled(session, outbox):
    captured, declined, short, stuck = (place(session, outbox) for _ in range(4))
    for order_id in (captured, declined):
        domain.on_stock_reserved(session, outbox, order_id)
    assert card_token(session, captured) == "tok_visa"  # the capture still needs it
    domain.on_payment_captured(session, outbox, captured)
    domain.on_payment_declined(session, outbox, declined)
    domain.on_stock_rejected(session, outbox, short)
    assert domain.expire(session, outbox, utcnow() + dt.timedelta(seconds=1)) == [stuck]
    assert [card_token(session, o) for o in (captured, declined, short, stuck)] == [None] * 4
    # only the event payments reads ever carried it
    assert [t for t, data in outbox.events if "card_token" in data] == [
        "payment_requested", "payment_requested"]
