"""The examples of docs "Testing a service", run as they are written there."""
from mesh.testing import wait_until
from services.notifications.service import NotificationsService


def test_a_registration_gets_its_welcome(start_service, emit_event, rpc_client):
    # an event handler, fed through the broker, its inbox and its retries
    start_service(NotificationsService)
    emit_event("accounts", "user_registered",
               {"user_id": 41, "email": "ann@example.com", "name": "Ann"})
    page = wait_until(lambda: rpc_client.notifications.list_notifications(
        user_id=41, limit=10, offset=0)["items"], what="the welcome")
    assert [n["kind"] for n in page] == ["welcome"]
