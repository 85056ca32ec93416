"""A card token lives only as long as the capture needs it, and only where it must."""
import json
import os
import uuid

import eventlet
from kombu import Connection, Exchange, Queue
from sqlalchemy import MetaData, create_engine, select

from mesh.testing import wait_until

SERVICES_WITH_DATABASES = ("accounts", "inventory", "orders", "payments", "notifications")


def stored_text(data_dir, service):
    """Every value of every table of `service`'s database, as one text."""
    engine = create_engine(f"sqlite:///{os.path.join(data_dir, service + '.sqlite')}")
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            return "\n".join(repr(tuple(row)) for table in metadata.sorted_tables
                             for row in conn.execute(select(table)))
    finally:
        engine.dispose()


def test_no_card_token_is_kept_or_told_beyond_the_capture(start_mesh, mesh_config):
    mesh = start_mesh(EVENT_RETRY_DELAYS=[0.2, 0.4])
    uri, data_dir = mesh_config["AMQP_URI"], mesh_config["MESH_DATA_DIR"]
    # a listener on every event orders publishes: what the wire carries
    wire = Queue(f"spy-{uuid.uuid4().hex[:8]}", exclusive=True, routing_key="#",
                 exchange=Exchange("orders.events", type="topic", durable=True))
    seen = []
    with Connection(uri) as connection:
        consumer = connection.Consumer(wire, callbacks=[lambda body, m: seen.append(body)],
                                       accept=["json"])
        consumer.consume()
        customer = mesh.customer()
        product = mesh.product(stock=3)
        confirmed_token = f"tok_{uuid.uuid4().hex}"
        short_token = f"tok_{uuid.uuid4().hex}"
        answers = [mesh.order(customer, product["id"], card=confirmed_token),
                   mesh.order(customer, product["id"], card="tok_declined"),
                   mesh.order(customer, product["id"], quantity=99, card=short_token)]
        assert [a.status_code for a in answers] == [202, 202, 202]
        settled = [mesh.settled(customer, a.json()["id"]) for a in answers]
        assert [(o["status"], o["reason"]) for o in settled] == [
            ("confirmed", None), ("rejected", "payment_declined"),
            ("rejected", "insufficient_stock")]
        listed = mesh("GET", "/api/v1/orders", customer)

        def drained():
            connection.drain_events(timeout=0.2)

        # order_created ×3, payment_requested ×2, confirmed, rejected ×2
        while len(seen) < 8:
            drained()
        eventlet.sleep(0.5)
        try:
            while True:
                drained()
        except TimeoutError:
            pass
    tokens = (confirmed_token, "tok_declined", short_token)

    # the answers: never
    for text in [a.text for a in answers] + [listed.text] + [json.dumps(o) for o in settled]:
        assert not any(token in text for token in tokens), text
    # the wire: only in payment_requested, the event payments reads
    carrying = sorted(event["type"] for event in seen
                      if any(token in json.dumps(event) for token in tokens))
    assert carrying == ["payment_requested", "payment_requested"]
    assert sorted(e["type"] for e in seen if e["type"] != "payment_requested") == [
        "order_confirmed", "order_created", "order_created", "order_created",
        "order_rejected", "order_rejected"]

    # the databases (orders' rows and outbox, every other service's): once
    # settled and published, nowhere
    def kept():
        return {service: [t for t in tokens if t in stored_text(data_dir, service)]
                for service in SERVICES_WITH_DATABASES}
    wait_until(lambda: not any(kept().values()), timeout=5, what="tokens scrubbed")
    # what was scrubbed was there to scrub: the outbox row is published and whole
    orders_text = stored_text(data_dir, "orders")
    assert orders_text.count("payment_requested") == 2 and '"amount_cents"' in orders_text
