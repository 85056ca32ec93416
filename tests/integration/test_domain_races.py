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
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mesh.data.db import utcnow
from mesh.testing import RecordingOutbox, wait_until
from services.orders import domain as orders

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


def another(session):
    """A second session on the same database: another instance's transaction."""
    return Session(bind=session.get_bind())


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
def test_hole5_capture_racing_a_refund_never_overwrites_it(migrated):
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
    late.close()
