"""What the bench reads and writes in databases: the stock service's table, and the
mesh's orders, outboxes and inboxes (settle times and event latencies come from
the timestamps the services themselves wrote)."""
import contextlib
import datetime as dt
import time

from sqlalchemy import select

from mesh.data.db import database_url, make_engine
from mesh.data.tables import inbox, outbox
from mesh.testing import temporary_postgres_databases
from services.orders.models import Order

SERVICES = ("accounts", "inventory", "orders", "payments", "notifications")
STOCK_PRODUCT_ID = 1
SETTLED = ("confirmed", "rejected", "cancelled")


def make_stock_database(path):
    """A SQLite file with the stock service's one product; returns its URL."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from bench.stock_service import Base, Product

    url = f"sqlite:///{path}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Product(id=STOCK_PRODUCT_ID, sku="bench-1", name="Bench",
                            price_cents=100, stock=10, created_at=dt.datetime.now()))
        session.commit()
    engine.dispose()
    return url


@contextlib.contextmanager
def postgres_databases():
    """`{service: url}`: a fresh PostgreSQL database for each service, dropped after."""
    with temporary_postgres_databases() as make:
        yield {name: make(f"bench_{name}") for name in SERVICES}


class Store:
    """Reads a running mesh's databases, as the services wrote them."""

    def __init__(self, mesh):
        config = {"MESH_DATA_DIR": mesh.data,
                  **{f"DATABASE_URL_{name.upper()}": url
                     for name, url in mesh.databases.items()}}
        self.engines = {name: make_engine(database_url(config, name)) for name in SERVICES}

    def last_order_id(self):
        with self.engines["orders"].connect() as conn:
            return conn.scalar(select(Order.id).order_by(Order.id.desc()).limit(1)) or 0

    def orders_after(self, order_id):
        """`[(status, created_at, updated_at)]` of the orders made after `order_id`."""
        with self.engines["orders"].connect() as conn:
            return conn.execute(select(Order.status, Order.created_at, Order.updated_at)
                                .where(Order.id > order_id)).all()

    def settled_after(self, order_id, timeout=60):
        """The orders after `order_id` once none is still moving."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.orders_after(order_id)
            if all(row.status in SETTLED for row in rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)

    def event_latencies(self, since):
        """Seconds from each event's outbox row to each handler's inbox row, for
        events recorded after `since` (an aware UTC datetime), and the events
        recorded: `{event_id: occurred_at}`."""
        recorded = {}
        for engine in self.engines.values():
            with engine.connect() as conn:
                recorded.update(conn.execute(
                    select(outbox.c.event_id, outbox.c.occurred_at)
                    .where(outbox.c.occurred_at >= since)).all())
        latencies = []
        for engine in self.engines.values():
            with engine.connect() as conn:
                for event_id, processed_at in conn.execute(
                        select(inbox.c.event_id, inbox.c.processed_at)
                        .where(inbox.c.processed_at >= since)):
                    if event_id in recorded:
                        latencies.append((processed_at - recorded[event_id]).total_seconds())
        return latencies, recorded

    def dispose(self):
        for engine in self.engines.values():
            engine.dispose()
