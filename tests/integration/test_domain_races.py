"""Saga steps and handlers that arrive late, twice or at once, on the real SQLite
and PostgreSQL: each is acted on once, and the rows say what happened.

Two transactions race here as two handlers of two service instances would: the
first does its work and holds its transaction open; the second runs on another
connection until it has done all it can (or waits on the first's lock); then
the first commits. On SQLite the mesh lets one transaction write at a time, so
only PostgreSQL can interleave them.
"""
import datetime as dt

import eventlet
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from mesh.data.db import utcnow
from mesh.data.tables import inbox
from mesh.testing import RecordingOutbox, wait_until
from services.inventory import domain as inventory
from services.notifications import domain as notifications
from services.orders import domain as orders
from services.payments import domain as payments
from services.payments.provider import Outcome, SimulatedProvider

ON_POSTGRES = pytest.param("postgresql", marks=pytest.mark.postgres)


@pytest.fixture(params=["sqlite", ON_POSTGRES])
def backend(request):
    return request.param


@pytest.fixture
def migrated(request, backend):
    """``migrated(service)``: a session on that service's migrated database."""
    # the databases first, so that they are dropped after the sessions close
    databases = request.getfixturevalue("postgres_databases") \
        if backend == "postgresql" else None
    migrated_session = request.getfixturevalue("migrated_session")

    def make(service):
        overrides = {}
        if databases is not None:
            overrides[f"DATABASE_URL_{service.upper()}"] = databases(service)
        return migrated_session(service, **overrides)
    return make


@pytest.fixture
def another(migrated):
    """``another(session)``: a second session on the same database, another
    instance's transaction (closed before the database goes)."""
    made = []

    def make(session):
        made.append(Session(bind=session.get_bind()))
        return made[-1]
    yield make
    for session in made:
        session.close()


def race(first, second):
    """Run `second()` while `first`'s transaction (already written, not yet
    committed) is open; commit `first` once `second` has finished or waits on
    one of its locks; returns what `second()` returned."""
    engine = first.get_bind()
    other = eventlet.spawn(second)

    def waiting():
        with engine.connect() as conn:
            return conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"))
    wait_until(lambda: other.dead or waiting(), what="the second transaction to run")
    first.commit()
    return other.wait()


# Orders: a late payment_captured (hole 5)

def rejected_by_the_timeout(session, outbox):
    """A pending order the timeout rejected while its payment was being taken."""
    order = orders.create(session, outbox, 1, [{"product_id": 7, "quantity": 2}],
                          "tok_visa", {7: 250})
    orders.on_stock_reserved(session, outbox, order["id"])
    assert orders.expire(session, outbox, utcnow() + dt.timedelta(seconds=1)) == [
        order["id"]]
    session.commit()
    outbox.events.clear()
    return order["id"]


def saga_state(session, order_id):
    row = session.connection().execute(orders.SAGA_BY_ID, {"order_id": order_id}).one()
    return row.status, row.reason, row.payment_state


REPLIES = {"captured": orders.on_payment_captured, "refunded": orders.on_payment_refunded}


@pytest.mark.parametrize("replies,refunds_asked", [
    # captured first: the row cannot tell whether payments had heard of the
    # rejection before it captured, so the refund is asked for (once)
    (("captured", "refunded"), 1),
    # refunded first: the money is back already; the capture is old news
    (("refunded", "captured"), 0),
    (("captured", "captured", "refunded", "captured"), 1),
], ids=["captured-then-refunded", "refunded-then-captured", "captured-again"])
def test_hole5_late_capture_never_overwrites_a_refund(migrated, replies, refunds_asked):
    session, outbox = migrated("orders"), RecordingOutbox("orders")
    order_id = rejected_by_the_timeout(session, outbox)
    for reply in replies:
        REPLIES[reply](session, outbox, order_id)
        session.commit()
    assert (saga_state(session, order_id), outbox.types()) == (
        ("rejected", "timeout", "refunded"), ["order_rejected"] * refunds_asked)


@pytest.mark.parametrize("backend", [ON_POSTGRES])
def test_hole5_capture_racing_a_refund_never_overwrites_it(migrated, another):
    session, outbox = migrated("orders"), RecordingOutbox("orders")
    order_id = rejected_by_the_timeout(session, outbox)
    orders.on_payment_refunded(session, outbox, order_id)  # not committed yet
    late, late_outbox = another(session), RecordingOutbox("orders")

    def capture():
        orders.on_payment_captured(late, late_outbox, order_id)
        late.commit()
    race(session, capture)
    assert (saga_state(late, order_id), late_outbox.types()) == (
        ("rejected", "timeout", "refunded"), [])


# Notifications and payments: check-then-act that PostgreSQL does not serialise (hole 6)

def handling(session, handler, event_id):
    """What the platform does before a handler runs: its inbox row, the
    transaction's first write (see mesh.messaging.handlers)."""
    session.execute(insert(inbox).values(handler=handler, event_id=event_id,
                                         processed_at=utcnow()))


def told(session, order_id=None):
    return session.execute(
        select(notifications.NOTIFICATIONS.c.kind, notifications.NOTIFICATIONS.c.event_id)
        .where(notifications.NOTIFICATIONS.c.order_id.is_(None) if order_id is None
               else notifications.NOTIFICATIONS.c.order_id == order_id)
        .order_by(notifications.NOTIFICATIONS.c.id)).all()


def tell_rejected(session, event_id, order_id):
    handling(session, "notifications.on_order_rejected", event_id)
    notifications.notify(session, event_id, 1, "order_rejected", order_id=order_id,
                         total_cents=500, reason="timeout")


def handled_events(session):
    return sorted(session.scalars(select(inbox.c.event_id)).all())


def test_hole6_order_news_is_told_once_and_welcomes_to_everyone(migrated):
    session = migrated("notifications")
    for user_id, event_id in ((1, "welcome-1"), (2, "welcome-2")):
        notifications.notify(session, event_id, user_id, "welcome", name="U",
                             email=f"u{user_id}@example.com")
    # the saga announced the rejection twice (a timeout racing a late reply)
    tell_rejected(session, "rejected-a", 41)
    session.commit()
    tell_rejected(session, "rejected-b", 41)
    session.commit()
    assert told(session) == [("welcome", "welcome-1"), ("welcome", "welcome-2")]
    assert told(session, 41) == [("order_rejected", "rejected-a")]
    assert handled_events(session) == ["rejected-a", "rejected-b"]


@pytest.mark.parametrize("backend", [ON_POSTGRES])
def test_hole6_two_rejections_handled_at_once_tell_the_user_once(migrated, another):
    session = migrated("notifications")
    tell_rejected(session, "rejected-a", 41)  # not committed yet
    other = another(session)

    def second():
        tell_rejected(other, "rejected-b", 41)
        other.commit()
    race(session, second)
    # one message; both events handled (the second's inbox row is kept)
    assert (told(other, 41), handled_events(other)) == (
        [("order_rejected", "rejected-a")], ["rejected-a", "rejected-b"])


class CountingProvider(SimulatedProvider):
    """The simulated provider, counting the refunds it is asked for."""

    def __init__(self):
        self.refunds = []

    def refund(self, idempotency_key, reference, amount_cents):
        self.refunds.append(idempotency_key)
        return super().refund(idempotency_key, reference, amount_cents)


@pytest.mark.parametrize("backend", [ON_POSTGRES])
def test_hole6_two_refunds_at_once_pay_back_once(migrated, another):
    session, outbox, provider = migrated("payments"), RecordingOutbox("payments"), \
        CountingProvider()
    payments.capture(session, outbox, provider, 41, 500, "tok_visa")
    session.commit()
    # the order rejected by a timeout and a late capture's second announcement
    handling(session, "payments.on_order_rejected", "rejected-a")
    payments.refund(session, outbox, provider, 41)  # not committed yet
    other = another(session)

    def second():
        handling(other, "payments.on_order_rejected", "rejected-b")
        payments.refund(other, outbox, provider, 41)
        other.commit()
    race(session, second)
    assert (provider.refunds, outbox.types(), payments.get(other.connection(), 41)["status"]) \
        == (["refund-41"], ["payment_captured", "payment_refunded"], "refunded")
    assert handled_events(other) == ["rejected-a", "rejected-b"]


class RefusingProvider(CountingProvider):
    """Refuses the first refund it is asked for (the provider is down)."""

    def refund(self, idempotency_key, reference, amount_cents):
        outcome = super().refund(idempotency_key, reference, amount_cents)
        return outcome if len(self.refunds) > 1 else Outcome(False, reason="unavailable")


def test_hole6_a_refund_the_provider_refused_is_claimed_again_by_its_retry(migrated):
    session, outbox, provider = migrated("payments"), RecordingOutbox("payments"), \
        RefusingProvider()
    payments.capture(session, outbox, provider, 41, 500, "tok_visa")
    session.commit()
    with pytest.raises(RuntimeError, match="unavailable"):
        payments.refund(session, outbox, provider, 41)
    session.rollback()  # what the platform does with a handler that raised
    assert payments.get(session.connection(), 41)["status"] == "captured"
    payments.refund(session, outbox, provider, 41)
    session.commit()
    payments.refund(session, outbox, provider, 41)  # a later copy: nothing to do
    assert (provider.refunds, outbox.types()[1:]) == (["refund-41"] * 2,
                                                       ["payment_refunded"])


# Inventory: one order's stock reserved by two deliveries at once

def reserve_handled(session, event_id, order_id, product_id):
    handling(session, "inventory.on_order_created", event_id)
    return inventory.reserve(session, order_id, [{"product_id": product_id, "quantity": 2}])


def stock_of(session, product_id):
    return inventory.get_product(session.connection(), product_id)["stock"]


@pytest.mark.parametrize("backend", [ON_POSTGRES])
def test_an_order_reserved_by_two_deliveries_at_once_holds_its_units_once(migrated, another):
    session = migrated("inventory")
    product_id = inventory.create_product(session, "sku-1", "A thing", 250, 5)["id"]
    session.commit()
    assert reserve_handled(session, "created-a", 41, product_id)[1]  # not committed yet
    other = another(session)

    def second():
        reserved = reserve_handled(other, "created-b", 41, product_id)
        other.commit()
        return reserved
    reservation, created = race(session, second)
    # the second found the first's reservation, and its own transaction (its
    # inbox row) was not rolled back for it
    assert (created, reservation["status"], reservation["lines"]) == (
        False, "reserved", [{"product_id": product_id, "quantity": 2}])
    assert (stock_of(other, product_id), handled_events(other)) == (
        3, ["created-a", "created-b"])


def test_an_unknown_product_leaves_no_reservation_but_the_handler_goes_on(migrated):
    session, outbox = migrated("inventory"), RecordingOutbox("inventory")
    product_id = inventory.create_product(session, "sku-1", "A thing", 250, 5)["id"]
    handling(session, "inventory.on_order_created", "created-a")
    inventory.on_order_created(session, outbox, 41, [
        {"product_id": product_id, "quantity": 2}, {"product_id": 404, "quantity": 1}])
    session.commit()
    assert outbox.events == [("stock_rejected", {"order_id": 41, "short_product_ids": [404]})]
    assert (stock_of(session, product_id), handled_events(session)) == (5, ["created-a"])
    assert inventory.reserve(session, 41, [{"product_id": product_id, "quantity": 2}])[1]
