"""A service's probes on its ops port: /ready follows its database and broker,
/health its event loop."""
import psycopg2
import pytest
import requests

from mesh.testing import POSTGRES_DSN, free_port, wait_until
from services.inventory.service import InventoryService


@pytest.mark.postgres
def test_ready_fails_when_the_database_goes_and_health_does_not(start_service,
                                                                postgres_databases):
    url, port = postgres_databases("probes"), free_port()
    start_service(InventoryService, DATABASE_URL_INVENTORY=url,
                  OPS_PORTS={"inventory": port})
    base = f"http://127.0.0.1:{port}"
    ready = requests.get(f"{base}/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"broker": "ok", "database": "ok"}
    admin = psycopg2.connect(f"{POSTGRES_DSN}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    admin.close()
    def failing():
        answer = requests.get(f"{base}/ready", timeout=10)
        return answer.status_code == 503 and answer.json()  # a 503 Response is falsy

    gone = wait_until(failing, what="/ready to fail")
    assert gone["checks"]["database"].startswith("unreachable")
    # alive all the same: restarting would not bring the database back
    assert requests.get(f"{base}/health", timeout=10).status_code == 200


def test_health_watches_every_queue_consumer_of_a_real_container(start_service):
    from nameko.messaging import QueueConsumer

    from mesh.runtime.probes import Probes

    port = free_port()
    container = start_service(InventoryService, OPS_PORTS={"inventory": port})
    probes = next(e for e in container.extensions if isinstance(e, Probes))
    consumers = {e for e in container.extensions if isinstance(e, QueueConsumer)}
    assert len(consumers) >= 2 and set(probes.consuming) == consumers  # RPC, events, replies
    first = dict(probes.consuming)
    wait_until(lambda: all(probes.consuming[c] > first[c] for c in consumers),
               what="every consumer going round its loop")
    health = requests.get(f"http://127.0.0.1:{port}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["checks"] == {"event_loop": "ok", "consumers": "ok"}
